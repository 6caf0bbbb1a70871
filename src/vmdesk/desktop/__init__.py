"""The desktop app: the web UI in a window of its own, a tray icon, and one app per library."""
