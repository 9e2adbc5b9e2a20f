//! Watching the manifests given to `sniway run -f` so the gateway reloads when they change.
//!
//! Editors and tools rarely write a file in place: vim and `sed -i` write a temporary file and
//! rename it over the original, `kubectl`-style writers do the same, and a Kubernetes ConfigMap
//! volume swaps a `..data` symlink to a new directory. A watch on the file itself would follow the
//! old inode and miss all of these, so a file is watched through its parent directory
//! (non-recursively), and only events naming the file, or the `..data` link it resolves through,
//! count. A directory given on the command line is watched recursively, and only manifest files
//! (`*.yaml`, `*.yml`, `*.json`) and subdirectories count, as those are what
//! [`crate::manifests::read_all`] reads.
//!
//! Editor swap and backup files (`.gw.yaml.swp`, `gw.yaml~`, `.#gw.yaml`) never count, and
//! neither do opens and reads: the reload itself opens every manifest, and must not trigger the
//! next one.
//!
//! Events come from the debouncer's own thread; a burst within the debounce window becomes one
//! change, and changes not yet taken by [`Watcher::changed`] coalesce into one.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use notify_debouncer_full::notify::event::{
    AccessKind, AccessMode, CreateKind, MetadataKind, ModifyKind, RemoveKind,
};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

/// The name a Kubernetes ConfigMap or Secret volume swaps atomically on update; the visible files
/// are symlinks through it.
const CONFIGMAP_DATA: &str = "..data";

/// Watches the manifests given on the command line. Dropping it stops watching.
pub struct Watcher {
    /// Kept alive: dropping the debouncer stops its thread and the OS watches.
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    /// One wake-up per batch of relevant events not yet taken (capacity 1: they coalesce).
    wake: mpsc::Receiver<()>,
    /// The paths that changed since the last [`Watcher::changed`].
    pending: Arc<Mutex<BTreeSet<PathBuf>>>,
    /// The quiet time that ends a burst.
    debounce: Duration,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Watcher {
    /// Watches files and directories (recursively, for *.yaml, *.yml, *.json) given on the
    /// command line; `-` (stdin) is skipped. `debounce` is the quiet time after the last event
    /// before a burst is reported as one change. A path that cannot be watched is an error
    /// naming it.
    pub fn new(paths: &[PathBuf], debounce: Duration) -> Result<Watcher> {
        let interest = Interest::new(paths)?;
        let (tx, wake) = mpsc::channel(1);
        let pending = Arc::new(Mutex::new(BTreeSet::new()));
        let handler = {
            let interest = interest.clone();
            let pending = Arc::clone(&pending);
            move |result: DebounceEventResult| {
                let events = match result {
                    Ok(events) => events,
                    Err(errors) => {
                        for e in errors {
                            tracing::warn!(error = %e, "watching manifests");
                        }
                        return;
                    }
                };
                let mut changed = Vec::new();
                for ev in &events {
                    changed.extend(interest.relevant(ev));
                }
                if changed.is_empty() {
                    return;
                }
                tracing::debug!(?changed, "manifests changed");
                pending.lock().unwrap_or_else(|e| e.into_inner()).extend(changed);
                // Full means a wake-up is already pending; this change rides on it.
                let _ = tx.try_send(());
            }
        };
        let mut debouncer =
            new_debouncer(debounce, None, handler).context("starting the file watcher")?;
        for dir in &interest.dirs {
            debouncer
                .watch(dir, RecursiveMode::Recursive)
                .with_context(|| format!("{}: cannot watch this directory", dir.display()))?;
        }
        let parents: BTreeSet<&Path> = interest
            .files
            .iter()
            .map(|f| f.parent.as_path())
            .filter(|p| !interest.dirs.iter().any(|d| p.starts_with(d)))
            .collect();
        for parent in parents {
            debouncer
                .watch(parent, RecursiveMode::NonRecursive)
                .with_context(|| format!("{}: cannot watch this directory", parent.display()))?;
        }
        Ok(Watcher { _debouncer: debouncer, wake, pending, debounce })
    }

    /// Resolves when a relevant change happened since the last call (a burst of changes within
    /// the debounce window is one change). None if the watcher died. Cancel-safe: a change seen
    /// by a call that was dropped (in a `select!`) is reported by the next one.
    pub async fn changed(&mut self) -> Option<()> {
        self.changed_paths().await.map(drop)
    }

    /// As [`Watcher::changed`], with the paths whose events counted.
    pub async fn changed_paths(&mut self) -> Option<Vec<PathBuf>> {
        loop {
            // Paths already pending: a call cancelled while settling took the wake-up with it.
            if self.pending.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
                self.wake.recv().await?;
            }
            self.settle().await;
            let taken =
                std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
            // Empty when an earlier call already took the paths this wake-up was sent for.
            if !taken.is_empty() {
                return Some(taken.into_iter().collect());
            }
        }
    }

    /// Waits until no batch has arrived for one debounce period, so that a burst is one change.
    /// The debouncer delays each event by the period but does not merge a burst that straddles
    /// its ticks; this does. A stream of changes that never pauses is reported anyway after
    /// [`MAX_SETTLE`] periods, so the gateway cannot be kept from reloading forever.
    async fn settle(&mut self) {
        let give_up = tokio::time::Instant::now() + self.debounce * MAX_SETTLE;
        while tokio::time::Instant::now() < give_up {
            match tokio::time::timeout(self.debounce, self.wake.recv()).await {
                Ok(Some(())) => continue,
                // Quiet, or the watcher died: report what is pending (the next call says None).
                Err(_) | Ok(None) => return,
            }
        }
    }
}

/// The longest a change waits for a burst to end, in debounce periods.
const MAX_SETTLE: u32 = 10;

/// What counts as a change: files (by name, in their parent directory) and directory trees.
#[derive(Clone, Debug)]
struct Interest {
    files: Vec<WatchedFile>,
    dirs: Vec<PathBuf>,
}

#[derive(Clone, Debug)]
struct WatchedFile {
    parent: PathBuf,
    /// The file's own name, `..data`, and the first component of a relative symlink target (the
    /// directory entry that a swap would replace).
    names: Vec<OsString>,
}

impl Interest {
    fn new(paths: &[PathBuf]) -> Result<Interest> {
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for path in paths {
            if path.as_os_str() == "-" {
                continue;
            }
            // Absolute, but symlinks kept: a ConfigMap's file is a symlink whose own name is
            // what the user gave, and whose target changes.
            let abs = std::path::absolute(path)
                .with_context(|| format!("{}: cannot resolve the path", path.display()))?;
            let meta = std::fs::metadata(&abs)
                .with_context(|| format!("{}: cannot watch manifests", path.display()))?;
            if meta.is_dir() {
                dirs.push(abs);
                continue;
            }
            let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
                anyhow::bail!("{}: cannot watch a file without a parent directory", path.display());
            };
            let mut names = vec![name.to_os_string(), OsString::from(CONFIGMAP_DATA)];
            if let Ok(target) = std::fs::read_link(&abs)
                && target.is_relative()
                && let Some(Component::Normal(first)) = target.components().next()
            {
                names.push(first.to_os_string());
            }
            files.push(WatchedFile { parent: parent.to_path_buf(), names });
        }
        Ok(Interest { files, dirs })
    }

    /// The paths of `event` that count as a change of the manifests.
    fn relevant(&self, event: &notify_debouncer_full::notify::Event) -> Vec<PathBuf> {
        if event.need_rescan() {
            // Events were lost (the kernel queue overflowed): assume everything changed.
            return event.paths.clone();
        }
        if !writes(&event.kind) {
            return Vec::new();
        }
        let folder = matches!(
            event.kind,
            EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder)
        );
        event
            .paths
            .iter()
            .filter(|p| {
                let Some(name) = p.file_name() else { return false };
                if editor_scratch(name) {
                    return false;
                }
                let of_file = self.files.iter().any(|f| {
                    p.parent() == Some(f.parent.as_path()) && f.names.iter().any(|n| n == name)
                });
                let in_dir = self.dirs.iter().any(|d| p.starts_with(d))
                    && (manifest(name) || folder || (renamed(&event.kind) && p.is_dir()));
                of_file || in_dir
            })
            .cloned()
            .collect()
    }
}

/// Whether the event can change what a reload reads: not opens, reads or access-time updates.
fn writes(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Other | EventKind::Any => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
    }
}

fn renamed(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Modify(ModifyKind::Name(_)))
}

/// `*.yaml`, `*.yml` or `*.json`, as the directory walk reads.
fn manifest(name: &OsStr) -> bool {
    matches!(Path::new(name).extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// Editor swap, backup and lock files: vim's `.name.swp`/`.swo`/`.swx` and `name~`, emacs's
/// `.#name` and `#name#`.
fn editor_scratch(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.ends_with('~')
        || name.starts_with(".#")
        || (name.starts_with('#') && name.ends_with('#'))
        || [".swp", ".swo", ".swx"].iter().any(|s| name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long enough for a slow CI machine; every wait for an expected change is bounded by it.
    const BOUND: Duration = Duration::from_secs(10);
    const DEBOUNCE: Duration = Duration::from_millis(100);

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("sniway-watch-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn next(w: &mut Watcher) -> Vec<PathBuf> {
        tokio::time::timeout(BOUND, w.changed_paths())
            .await
            .expect("a change is reported in time")
            .expect("the watcher is alive")
    }

    fn names(paths: &[PathBuf]) -> Vec<String> {
        let mut n: Vec<String> =
            paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        n.dedup();
        n
    }

    #[tokio::test]
    async fn writing_a_watched_file_in_place_is_a_change() {
        let dir = TempDir::new("in-place");
        let file = dir.path("gw.yaml");
        std::fs::write(&file, "a: 1\n").unwrap();
        let mut w = Watcher::new(std::slice::from_ref(&file), DEBOUNCE).unwrap();
        std::fs::write(&file, "a: 2\n").unwrap();
        assert_eq!(names(&next(&mut w).await), ["gw.yaml"]);
    }

    #[tokio::test]
    async fn a_file_renamed_over_the_watched_one_is_a_change_and_is_followed_after() {
        let dir = TempDir::new("rename-over");
        let file = dir.path("gw.yaml");
        std::fs::write(&file, "a: 1\n").unwrap();
        let mut w = Watcher::new(std::slice::from_ref(&file), DEBOUNCE).unwrap();
        // As `sed -i` does: a temporary file in the same directory, renamed over the original.
        let tmp = dir.path("sedAbC123");
        std::fs::write(&tmp, "a: 2\n").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert!(names(&next(&mut w).await).contains(&"gw.yaml".to_string()));
        // The new inode is still watched: the watch is on the directory, not the old file.
        std::fs::write(&file, "a: 3\n").unwrap();
        assert_eq!(names(&next(&mut w).await), ["gw.yaml"]);
    }

    #[tokio::test]
    async fn a_change_seen_by_a_cancelled_call_is_reported_by_the_next() {
        let dir = TempDir::new("cancel");
        let file = dir.path("gw.yaml");
        std::fs::write(&file, "a: 1\n").unwrap();
        let mut w = Watcher::new(std::slice::from_ref(&file), DEBOUNCE).unwrap();
        std::fs::write(&file, "a: 2\n").unwrap();
        // Wait for the wake-up to be sent, then cancel the call while it settles.
        tokio::time::timeout(BOUND, async {
            while w.pending.lock().unwrap().is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the change arrives");
        let cancelled = tokio::time::timeout(Duration::from_millis(1), w.changed()).await;
        assert!(cancelled.is_err(), "settling takes a debounce period");
        assert_eq!(names(&next(&mut w).await), ["gw.yaml"]);
    }

    #[tokio::test]
    async fn a_burst_of_writes_is_one_change() {
        let dir = TempDir::new("burst");
        let file = dir.path("gw.yaml");
        std::fs::write(&file, "a: 0\n").unwrap();
        let mut w = Watcher::new(std::slice::from_ref(&file), DEBOUNCE).unwrap();
        for i in 1..=20 {
            std::fs::write(&file, format!("a: {i}\n")).unwrap();
        }
        next(&mut w).await;
        // Proving that nothing else arrives needs a window; it is several debounce periods, so a
        // second report from the same burst would have come by then. This can only pass wrongly
        // (on a machine too slow to deliver it in time), never fail wrongly.
        let more = tokio::time::timeout(DEBOUNCE * 5, w.changed()).await;
        assert!(more.is_err(), "the burst was reported more than once");
    }

    #[tokio::test]
    async fn reading_the_manifests_is_not_a_change() {
        let dir = TempDir::new("read");
        let file = dir.path("gw.yaml");
        std::fs::write(&file, "a: 1\n").unwrap();
        let mut w = Watcher::new(&[file.clone(), dir.0.clone()], DEBOUNCE).unwrap();
        // What a reload does: open and read every manifest.
        crate::manifests::read_all(&[file.clone(), dir.0.clone()]).unwrap();
        std::fs::write(dir.path("marker.yaml"), "b: 1\n").unwrap();
        assert_eq!(names(&next(&mut w).await), ["marker.yaml"]);
    }

    #[tokio::test]
    async fn a_new_file_or_subdirectory_in_a_watched_directory_is_a_change_and_a_deletion_too() {
        let dir = TempDir::new("dir");
        std::fs::write(dir.path("a.yaml"), "a: 1\n").unwrap();
        let mut w = Watcher::new(std::slice::from_ref(&dir.0), DEBOUNCE).unwrap();
        std::fs::write(dir.path("b.yml"), "b: 1\n").unwrap();
        assert_eq!(names(&next(&mut w).await), ["b.yml"]);
        std::fs::create_dir(dir.path("sub")).unwrap();
        assert_eq!(names(&next(&mut w).await), ["sub"]);
        // The new subdirectory is watched too.
        std::fs::write(dir.path("sub/c.json"), "{}").unwrap();
        assert_eq!(names(&next(&mut w).await), ["c.json"]);
        std::fs::remove_file(dir.path("a.yaml")).unwrap();
        assert_eq!(names(&next(&mut w).await), ["a.yaml"]);
    }

    #[tokio::test]
    async fn unrelated_and_editor_scratch_files_are_not_changes() {
        let dir = TempDir::new("unrelated");
        let file = dir.path("gw.yaml");
        std::fs::write(&file, "a: 1\n").unwrap();
        let sub = TempDir::new("unrelated-dir");
        let mut w = Watcher::new(&[file.clone(), sub.0.clone()], DEBOUNCE).unwrap();
        // Next to the watched file: other files, whatever their extension, and its editor files.
        for name in ["other.yaml", "notes.txt", ".gw.yaml.swp", "gw.yaml~", ".#gw.yaml"] {
            std::fs::write(dir.path(name), "x").unwrap();
        }
        // In a watched directory: files that are not manifests, and editor files of manifests.
        for name in ["README.md", ".a.yaml.swp", "a.yaml~", ".#a.yaml", "#a.yaml#"] {
            std::fs::write(sub.path(name), "x").unwrap();
        }
        // Then one real change: it must be reported alone, whether or not the writes above fell
        // into the same debounce window.
        std::fs::write(&file, "a: 2\n").unwrap();
        assert_eq!(names(&next(&mut w).await), ["gw.yaml"]);
    }

    #[tokio::test]
    async fn a_configmap_style_symlink_swap_is_a_change() {
        let dir = TempDir::new("configmap");
        // The layout kubelet makes: gw.yaml -> ..data/gw.yaml, ..data -> ..2026_01, and an update
        // makes ..2026_02, points ..data_tmp at it and renames ..data_tmp over ..data.
        std::fs::create_dir(dir.path("..2026_01")).unwrap();
        std::fs::write(dir.path("..2026_01/gw.yaml"), "a: 1\n").unwrap();
        std::os::unix::fs::symlink("..2026_01", dir.path("..data")).unwrap();
        std::os::unix::fs::symlink("..data/gw.yaml", dir.path("gw.yaml")).unwrap();
        let mut w = Watcher::new(&[dir.path("gw.yaml")], DEBOUNCE).unwrap();
        std::fs::create_dir(dir.path("..2026_02")).unwrap();
        std::fs::write(dir.path("..2026_02/gw.yaml"), "a: 2\n").unwrap();
        std::os::unix::fs::symlink("..2026_02", dir.path("..data_tmp")).unwrap();
        std::fs::rename(dir.path("..data_tmp"), dir.path("..data")).unwrap();
        assert!(names(&next(&mut w).await).contains(&"..data".to_string()));
        assert_eq!(std::fs::read_to_string(dir.path("gw.yaml")).unwrap(), "a: 2\n");
    }

    #[test]
    fn a_missing_path_is_an_error_naming_it_and_stdin_is_skipped() {
        let err = Watcher::new(&[PathBuf::from("/nonexistent/sniway.yaml")], DEBOUNCE).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/sniway.yaml"), "{err:#}");
        assert!(Watcher::new(&[PathBuf::from("-")], DEBOUNCE).is_ok());
    }

    #[test]
    fn editor_scratch_names_are_recognised() {
        for n in [".gw.yaml.swp", ".gw.yaml.swx", "gw.yaml~", ".#gw.yaml", "#gw.yaml#"] {
            assert!(editor_scratch(OsStr::new(n)), "{n}");
        }
        for n in ["gw.yaml", "..data", "a#b.yaml"] {
            assert!(!editor_scratch(OsStr::new(n)), "{n}");
        }
    }
}
