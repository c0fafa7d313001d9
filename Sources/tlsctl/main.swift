print("tlsctl")
