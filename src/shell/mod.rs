//! Serial-console debug shell (safe): line editing, commands, a Linux-style virtual file tree.
#![forbid(unsafe_code)]
