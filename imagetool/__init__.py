"""Build the lockstep container image hermetically and prove its digest.

Modules: ``base`` (Debian root filesystem + base lock), ``wheels`` (locked wheels for the image),
``image`` (build, lock, verify), ``ocidiff`` (explain why two image builds differ).
"""
