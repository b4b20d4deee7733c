"""The network rooms: the client and its error seam (``http``), audio bodies
(``download``). Nothing here imports ID3 code; it may be told to reserve bytes."""
