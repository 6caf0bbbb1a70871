"""One detached process per running VM: owns the engine session, its sockets and its logs."""
