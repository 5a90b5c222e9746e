"""Wire contract v1 (docs/protocol.md): typed messages, error codes, language codes.

Pure code: bytes in, typed values out, and bytes out.  Nothing here touches a socket or a loop.
"""
