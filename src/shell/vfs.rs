//! Paths in the virtual file tree, and a registry the glue can serve listings from.
//!
//! # Theory of operation
//!
//! The tree lives in the backend, which only has to answer "what is in this directory".
//! The shell does the rest here: it turns what the user typed into an absolute path
//! (there is no working directory, so relative paths start at `/`; `.` and `..` are
//! resolved lexically and `..` stops at the root, like Linux), and finds out what a path
//! is by listing its parent. That one question is enough for `ls`, `cat`, permission
//! checks and tab completion, so registering a file costs the glue one listing entry.
//!
//! [`VfsTree`] is that listing for a tree whose shape is known up front (procfs files,
//! one sysfs/debugfs directory per CMA area, device-tree nodes): register full paths once,
//! answer [`super::Backend::fs_list`] with [`VfsTree::list`], and dispatch reads and writes
//! by path.
#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;

use super::backend::{Access, Backend, DirEntry, EntryKind, FsError};

/// Absolute, normalised form of `path`: `/` joined components, no `.`, `..` or empty
/// components, no trailing slash (except the root itself).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    if parts.is_empty() {
        return String::from("/");
    }
    let mut out = String::new();
    for part in parts {
        out.push('/');
        out.push_str(part);
    }
    out
}

/// Splits a normalised path into its parent directory and last component.
/// The root has no parent.
pub fn split_parent(path: &str) -> Option<(&str, &str)> {
    if path == "/" {
        return None;
    }
    let slash = path.rfind('/')?;
    let parent = if slash == 0 { "/" } else { &path[..slash] };
    Some((parent, &path[slash + 1..]))
}

/// What a normalised path is, found by listing its parent.
pub fn stat<B: Backend + ?Sized>(backend: &mut B, path: &str) -> Result<EntryKind, FsError> {
    let Some((parent, name)) = split_parent(path) else {
        return Ok(EntryKind::Dir);
    };
    let entries = backend.fs_list(parent)?;
    entries
        .into_iter()
        .find(|entry| entry.name == name)
        .map(|entry| entry.kind)
        .ok_or(FsError::NotFound)
}

/// A registry of paths for [`Backend::fs_list`]. Parents are created implicitly, entries
/// keep the order they were registered in (debugfs lists in creation order too).
#[derive(Clone, Debug, Default)]
pub struct VfsTree {
    /// (normalised path, kind); a handful of dozen entries, so a flat list is the cheapest.
    entries: Vec<(String, EntryKind)>,
}

impl VfsTree {
    pub fn new() -> Self {
        VfsTree {
            entries: Vec::new(),
        }
    }

    /// Registers a directory (and its parents). Registering twice is harmless.
    pub fn add_dir(&mut self, path: &str) -> &mut Self {
        let path = normalize(path);
        self.insert(&path, EntryKind::Dir);
        self
    }

    /// Registers a file (and its parent directories). A second registration of the same
    /// path replaces the access mode.
    pub fn add_file(&mut self, path: &str, access: Access) -> &mut Self {
        let path = normalize(path);
        self.insert(&path, EntryKind::File(access));
        self
    }

    /// Drops a path and everything below it (e.g. a CMA area that went away).
    pub fn remove(&mut self, path: &str) {
        let path = normalize(path);
        self.entries
            .retain(|(existing, _)| !is_same_or_below(existing, &path));
    }

    pub fn kind(&self, path: &str) -> Option<EntryKind> {
        let path = normalize(path);
        if path == "/" {
            return Some(EntryKind::Dir);
        }
        self.entries
            .iter()
            .find(|(existing, _)| *existing == path)
            .map(|(_, kind)| *kind)
    }

    /// The answer to `Backend::fs_list(dir)`.
    pub fn list(&self, dir: &str) -> Result<Vec<DirEntry>, FsError> {
        let dir = normalize(dir);
        match self.kind(&dir) {
            None => return Err(FsError::NotFound),
            Some(EntryKind::File(_)) => return Err(FsError::NotADirectory),
            Some(EntryKind::Dir) => {}
        }
        Ok(self
            .entries
            .iter()
            .filter_map(|(path, kind)| {
                let (parent, name) = split_parent(path)?;
                (parent == dir).then(|| DirEntry {
                    name: String::from(name),
                    kind: *kind,
                })
            })
            .collect())
    }

    fn insert(&mut self, path: &str, kind: EntryKind) {
        if path == "/" {
            return;
        }
        if let Some((parent, _)) = split_parent(path) {
            if parent != "/" && self.kind(parent).is_none() {
                let parent = String::from(parent);
                self.insert(&parent, EntryKind::Dir);
            }
        }
        match self
            .entries
            .iter_mut()
            .find(|(existing, _)| existing == path)
        {
            Some(existing) => existing.1 = kind,
            None => self.entries.push((String::from(path), kind)),
        }
    }
}

fn is_same_or_below(path: &str, top: &str) -> bool {
    if top == "/" {
        return true;
    }
    path == top || (path.starts_with(top) && path.as_bytes().get(top.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn normalize_resolves_dots_and_slashes() {
        assert_eq!(normalize(""), "/");
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize("proc"), "/proc");
        assert_eq!(normalize("//proc///meminfo/"), "/proc/meminfo");
        assert_eq!(normalize("/proc/./x/../meminfo"), "/proc/meminfo");
        assert_eq!(normalize("/../../proc"), "/proc");
        assert_eq!(normalize("/a/b/../../.."), "/");
    }

    #[test]
    fn split_parent_of_paths() {
        assert_eq!(split_parent("/"), None);
        assert_eq!(split_parent("/proc"), Some(("/", "proc")));
        assert_eq!(split_parent("/proc/meminfo"), Some(("/proc", "meminfo")));
    }

    #[test]
    fn tree_creates_parents_and_lists_in_order() {
        let mut tree = VfsTree::new();
        tree.add_file("/proc/meminfo", Access::ReadOnly)
            .add_file("/proc/buddyinfo", Access::ReadOnly)
            .add_file("/sys/kernel/debug/cma/reserved/alloc", Access::WriteOnly);
        assert_eq!(
            tree.list("/").unwrap(),
            vec![DirEntry::dir("proc"), DirEntry::dir("sys")]
        );
        assert_eq!(
            tree.list("/proc").unwrap(),
            vec![
                DirEntry::file("meminfo", Access::ReadOnly),
                DirEntry::file("buddyinfo", Access::ReadOnly)
            ]
        );
        assert_eq!(
            tree.list("/sys/kernel/debug/cma").unwrap(),
            vec![DirEntry::dir("reserved")]
        );
        assert_eq!(tree.list("/nope"), Err(FsError::NotFound));
        assert_eq!(tree.list("/proc/meminfo"), Err(FsError::NotADirectory));
        assert_eq!(
            tree.kind("/proc/../proc/meminfo"),
            Some(EntryKind::File(Access::ReadOnly))
        );
    }

    #[test]
    fn tree_remove_takes_the_subtree_only() {
        let mut tree = VfsTree::new();
        tree.add_file("/a/b/c", Access::ReadOnly)
            .add_file("/a/bc", Access::ReadOnly);
        tree.remove("/a/b");
        assert_eq!(tree.kind("/a/b/c"), None);
        assert_eq!(tree.kind("/a/b"), None);
        assert_eq!(tree.kind("/a/bc"), Some(EntryKind::File(Access::ReadOnly)));
        // Re-adding a file as a directory path replaces the kind instead of duplicating.
        tree.add_dir("/a/bc");
        assert_eq!(tree.list("/a").unwrap(), vec![DirEntry::dir("bc")]);
    }
}
