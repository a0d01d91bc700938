//! Child processes that do not outlive xtask.
//!
//! QEMU and the vhost-user devices are children of xtask. Every normal way out (QEMU
//! quits, Ctrl-A X, a test timeout, an error) is handled by their owners' `Drop`s, but a
//! `SIGKILL`ed xtask runs no destructor. So each such child asks the kernel for a signal
//! when its parent goes: `prctl(PR_SET_PDEATHSIG, SIGKILL)` between fork and exec
//! (prctl(2)), and exits at once if the parent is already gone by then (the race the man
//! page warns about: the signal is only armed for a parent that still exists).
//!
//! The signal is tied to the *thread* that forked: xtask spawns these children from the
//! thread that also waits for them (`run`'s main thread, each console test's thread), so
//! the child never outlives the code that owns it.
//!
//! Sockets a killed run leaves in `$TMPDIR` are swept by [`sweep_stale_sockets`] at the
//! next start: their names carry the pid of the xtask that made them.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// Arms `command` so its process gets `SIGKILL` when xtask dies.
pub fn dies_with_xtask(command: &mut Command) -> &mut Command {
    let parent = std::process::id() as libc::pid_t;
    // Safety: `pre_exec` requires the closure to be async-signal-safe: it only makes
    // async-signal-safe system calls (prctl, getppid, _exit) between fork and exec,
    // allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        })
    }
}

/// Removes `$TMPDIR` files named `<prefix>-<pid>-...` whose xtask (`<pid>`) is gone.
pub fn sweep_stale_sockets(dir: &Path, prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = owner_pid(&name.to_string_lossy(), prefix) else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists()
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// The pid in `<prefix>-<pid>-<rest>`.
fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn stale_names_are_recognised_by_their_pid() {
        assert_eq!(
            owner_pid("monolith-video-123-4.sock", "monolith-video"),
            Some(123)
        );
        assert_eq!(owner_pid("monolith-video-x-4.sock", "monolith-video"), None);
        assert_eq!(
            owner_pid("monolith-videos-1-4.sock", "monolith-video"),
            None
        );
        let dir = std::env::temp_dir().join(format!("monolith-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A pid beyond pid_max (2^22) is never alive; ours is.
        let dead = dir.join("monolith-video-4194305-0.sock");
        let live = dir.join(format!("monolith-video-{}-0.sock", std::process::id()));
        std::fs::write(&dead, b"").unwrap();
        std::fs::write(&live, b"").unwrap();
        assert_eq!(sweep_stale_sockets(&dir, "monolith-video"), 1);
        assert!(!dead.exists() && live.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A middle process spawns an armed `sleep` and is SIGKILLed: the sleep must go too.
    #[test]
    fn an_armed_child_dies_with_its_parent() {
        if std::env::var_os("MONOLITH_CHILD_TEST_PARENT").is_some() {
            // The middle process: spawn the grandchild, say its pid, wait to be killed.
            let mut sleep = Command::new("sleep");
            sleep.arg("60");
            let mut child = dies_with_xtask(&mut sleep).spawn().unwrap();
            println!("grandchild {}", child.id());
            std::thread::sleep(Duration::from_secs(60));
            // Only reached if nobody killed this process: clean up.
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        let mut middle = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child::tests::an_armed_child_dies_with_its_parent",
                "--nocapture",
            ])
            .env("MONOLITH_CHILD_TEST_PARENT", "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(middle.stdout.take().unwrap());
        let mut grandchild = None;
        let mut line = String::new();
        while grandchild.is_none() {
            line.clear();
            if std::io::BufRead::read_line(&mut out, &mut line).unwrap() == 0 {
                break;
            }
            grandchild = line
                .split_whitespace()
                .skip_while(|w| *w != "grandchild")
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok());
        }
        let grandchild = grandchild.expect("the middle process names its child");
        let proc_dir = Path::new("/proc").join(grandchild.to_string());
        assert!(proc_dir.exists(), "the grandchild runs");
        middle.kill().unwrap();
        middle.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        // Gone, or a zombie waiting for init to reap it.
        let gone = || {
            std::fs::read_to_string(proc_dir.join("stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
        };
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            gone(),
            "the grandchild {grandchild} outlived its killed parent"
        );
    }
}
