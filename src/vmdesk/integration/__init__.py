"""Guest integration: the SPICE agent's host side (clipboard, display size) and the guest agent."""
