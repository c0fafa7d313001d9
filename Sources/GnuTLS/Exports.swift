@_exported import struct GnuTLSCore.GnuTLSError
