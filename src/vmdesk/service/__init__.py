"""The one application API that the CLI and the web UI both call.

Functions here take a :class:`~vmdesk.core.library.Library` (see :func:`library.open`)
and plain data, raise :class:`~vmdesk.core.errors.VMDeskError` subclasses, and return
plain data or model objects; presenting them is the caller's business.
"""
