"""Parts the tools and the method share: one image lister and reader (`images`), one device resolver (`devices`)."""
