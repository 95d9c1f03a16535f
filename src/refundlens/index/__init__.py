from .hashing import PhotoHashes, photo_hashes
