"""What the image and the training toolchain are made of, each input locked by sha256.

`store` is the leaf: the store's layout, its lock (`StoreLock`), checking and placing files, DVC.
`locks` (the requirement locks), `wheels`, `base` and the Debian access (`apt`, `aptsources`,
`inrelease`) read and check their inputs. `fetch` sits above them all: it is the only module that
fills the store from the network or re-derives the base from the stored .debs.
"""
