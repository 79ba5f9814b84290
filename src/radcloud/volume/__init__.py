"""Server-side 3D: volumes built once from a series, cached, and rendered as views.

:mod:`geometry` places voxels in patient space (tilt and uneven spacing included),
:mod:`build` assembles a volume from the archive, :mod:`cache` keeps built volumes
(LRU by bytes, one build per series however many requests ask), :mod:`mpr` and
:mod:`vr` turn a volume into images, :mod:`save` stores results as a derived
series, and :mod:`service` is what the HTTP routes call.
"""
