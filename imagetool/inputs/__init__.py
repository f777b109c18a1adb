"""What the image and the training toolchain are made of, each input locked by sha256.

Pure readers and checkers, lowest first: `store` is the leaf (the store's layout, its lock
`StoreLock`, checking and placing files, DVC); `locks` (the requirement locks), `wheels` and `base`
read and check their locks; `aptsources` and `inrelease` check where Debian packages come from.
Above them, what makes or fetches: `apt` (downloads .debs), `base_build` (mmdebstrap: the base from
the mirror for `make lock-base`), `rederive` (the base from the stored .debs, offline), and `fetch`,
the only module that fills the store, from a DVC remote or the network (refused under
`LOCKSTEP_OFFLINE=1`), and places its files where the builds read them.
"""
