"""The aiohttp front end: WebSocket channels for nodes and sessions, and the operator API."""
