import Foundation

/// A PKCS#11 module compiled at run time (with the toolchain's `clang`, or `cc`) that sits
/// between GnuTLS and SoftHSM2: it forwards every function of SoftHSM's function list,
/// appends one line per `C_Login` to a file (the count at the token, below GnuTLS and
/// p11-kit, whatever they retry), and can pretend the user PIN is locked: `C_Login` answers
/// `CKR_PIN_LOCKED` and/or `C_GetTokenInfo` sets `CKF_USER_PIN_LOCKED`. SoftHSM2 itself
/// never locks a PIN.
///
/// Load it explicitly (`tlsctl … --module PATH`, `PKCS11Key(uri:pin:module:)`): GnuTLS then
/// initializes PKCS#11 by hand and does not load p11-kit's configured SoftHSM beside it,
/// so the token is reached only through the shim. Its configuration file is read on every
/// call, so ``lock(_:)`` takes effect at once, in a running server too.
public struct PKCS11Shim: Sendable {
    /// How the shim reports the user PIN.
    public enum Lock: String, Sendable {
        /// Forward everything.
        case none
        /// `C_Login` answers `CKR_PIN_LOCKED` (the token is not asked).
        case login
        /// `C_GetTokenInfo` sets `CKF_USER_PIN_LOCKED`.
        case flag
        /// Both.
        case both
    }

    /// The compiled module.
    public let modulePath: String
    let configurationPath: String
    let loginsPath: String
    let realModule: String

    /// Compiles the shim into `directory`, forwarding to `realModule`.
    public init(in directory: String, realModule: String = "/usr/lib/softhsm/libsofthsm2.so") async throws {
        let source = (directory as NSString).appendingPathComponent("pkcs11-shim.c")
        modulePath = (directory as NSString).appendingPathComponent("pkcs11-shim.so")
        configurationPath = (directory as NSString).appendingPathComponent("pkcs11-shim.conf")
        loginsPath = (directory as NSString).appendingPathComponent("pkcs11-shim.logins")
        self.realModule = realModule
        try Self.source.write(toFile: source, atomically: true, encoding: .utf8)
        try lock(.none)
        let compiler = try (try? Tool.locate("clang")) ?? Tool.locate("cc", package: "gcc")
        // The p11-kit headers come with libp11-kit-dev (a dependency of libgnutls28-dev).
        let result = try await Tool.run([compiler, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-I/usr/include/p11-kit-1",
                                         "-DSHIM_CONFIG=\"\(configurationPath)\"", "-o", modulePath, source, "-ldl"], timeout: 120)
        guard result.succeeded else { throw ShimBuildError(detail: "\(result)") }
    }

    /// Sets how the shim reports the user PIN, from the next PKCS#11 call on.
    public func lock(_ lock: Lock) throws {
        try "module=\(realModule)\nlogins=\(loginsPath)\nlock=\(lock.rawValue)\n"
            .write(toFile: configurationPath, atomically: true, encoding: .utf8)
    }

    /// Every `C_Login` so far, one line each: `C_Login pid=P user=U rv=0xRV` (0xa0:
    /// CKR_PIN_INCORRECT, 0xa4: CKR_PIN_LOCKED, 0x0: CKR_OK).
    public func logins() -> [String] {
        guard let text = try? String(contentsOfFile: loginsPath, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }

    /// Forgets the logins so far.
    public func resetLogins() {
        try? FileManager.default.removeItem(atPath: loginsPath)
    }

    struct ShimBuildError: Error, CustomStringConvertible {
        var detail: String
        var description: String { "the PKCS#11 shim did not compile: \(detail)" }
    }

    static let source = #"""
/* A PKCS#11 module for tests: forwards every call to the module named by `module=` in
   its configuration file (SHIM_CONFIG, fixed at compile time), records each C_Login,
   and can pretend the user PIN is locked. The configuration is read again on each call:
     module=/usr/lib/softhsm/libsofthsm2.so   the real module (read once)
     logins=/path                             one line appended per C_Login
     lock=login|flag|both                     C_Login answers CKR_PIN_LOCKED (login) and/or
                                              C_GetTokenInfo sets CKF_USER_PIN_LOCKED (flag)
*/
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

#ifndef SHIM_CONFIG
#error "compile with -DSHIM_CONFIG=\"/path/to/shim.conf\""
#endif

static CK_FUNCTION_LIST shim_list;
static CK_FUNCTION_LIST_PTR real_list;

/* The value of `key=` in the configuration, or "" (into `value`). */
static void shim_setting(const char *key, char *value, size_t capacity) {
    char line[1024];
    size_t length = strlen(key);
    value[0] = 0;
    FILE *file = fopen(SHIM_CONFIG, "r");
    if (file == NULL) return;
    while (fgets(line, sizeof line, file) != NULL) {
        if (strncmp(line, key, length) == 0 && line[length] == '=') {
            snprintf(value, capacity, "%s", line + length + 1);
            value[strcspn(value, "\r\n")] = 0;
        }
    }
    fclose(file);
}

static int shim_locked(const char *how) {
    char lock[64];
    shim_setting("lock", lock, sizeof lock);
    return strcmp(lock, how) == 0 || strcmp(lock, "both") == 0;
}

static CK_RV shim_Login(CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_length) {
    CK_RV rv = shim_locked("login") ? CKR_PIN_LOCKED : real_list->C_Login(session, user, pin, pin_length);
    char path[1024];
    shim_setting("logins", path, sizeof path);
    if (path[0] != 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            char record[128];
            int n = snprintf(record, sizeof record, "C_Login pid=%ld user=%lu rv=0x%lx\n", (long)getpid(), (unsigned long)user, (unsigned long)rv);
            if (n > 0) { ssize_t written = write(fd, record, (size_t)n); (void)written; }
            close(fd);
        }
    }
    return rv;
}

static CK_RV shim_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
    CK_RV rv = real_list->C_GetTokenInfo(slot, info);
    if (rv == CKR_OK && info != NULL && shim_locked("flag")) info->flags |= CKF_USER_PIN_LOCKED;
    return rv;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
    if (list == NULL) return CKR_ARGUMENTS_BAD;
    if (real_list == NULL) {
        char module[1024];
        shim_setting("module", module, sizeof module);
        /* Never closed: the module stays loaded for the life of the process, as p11-kit's do. */
        void *handle = dlopen(module, RTLD_NOW | RTLD_LOCAL);
        if (handle == NULL) return CKR_GENERAL_ERROR;
        CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(handle, "C_GetFunctionList");
        CK_FUNCTION_LIST_PTR real = NULL;
        if (get == NULL || get(&real) != CKR_OK || real == NULL) return CKR_GENERAL_ERROR;
        shim_list = *real;
        shim_list.C_Login = shim_Login;
        shim_list.C_GetTokenInfo = shim_GetTokenInfo;
        shim_list.C_GetFunctionList = C_GetFunctionList;
        real_list = real;
    }
    *list = &shim_list;
    return CKR_OK;
}
"""#
}
