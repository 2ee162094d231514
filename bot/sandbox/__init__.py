"""Loopback emulators of the providers' APIs and the `/sandbox` page that chats through them."""
