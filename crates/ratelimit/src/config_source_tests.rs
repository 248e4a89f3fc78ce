use std::os::unix::fs::symlink;

use super::*;

fn runtime(root: &Path, ignore_dotfiles: bool) -> FileSource {
    FileSource::Runtime(RuntimeDir {
        root: root.to_path_buf(),
        subdirectory: "ratelimit".into(),
        app_directory: "config".into(),
        ignore_dotfiles,
    })
}

fn names(files: &[ConfigFile]) -> Vec<&str> {
    files.iter().map(|f| f.name.as_str()).collect()
}

/// envoyproxy's layout: RUNTIME_ROOT is a symlink swapped to a new directory.
#[test]
fn a_root_symlink_swap_is_seen_and_read_whole() {
    let base = tempfile::tempdir().unwrap();
    for (v, text) in [("v1", "one"), ("v2", "two")] {
        let app = base.path().join(v).join("ratelimit/config");
        std::fs::create_dir_all(app.join("nested")).unwrap();
        std::fs::write(app.join("a.yaml"), text).unwrap();
        std::fs::write(app.join("nested/b.yaml"), text).unwrap();
    }
    let current = base.path().join("current");
    symlink(base.path().join("v1"), &current).unwrap();
    let src = runtime(&current, false);
    let before = src.fingerprint().unwrap();
    let files = src.read().unwrap();
    assert_eq!(names(&files), ["config/a.yaml", "config/nested/b.yaml"]);
    assert!(files.iter().all(|f| f.text == "one"));

    // The swap: a new link renamed over the old one (atomic).
    let tmp = base.path().join("current.tmp");
    symlink(base.path().join("v2"), &tmp).unwrap();
    std::fs::rename(&tmp, &current).unwrap();
    assert_ne!(src.fingerprint().unwrap(), before);
    assert!(src.read().unwrap().iter().all(|f| f.text == "two"));
}

/// A Kubernetes ConfigMap volume: keys are links into `..data`, itself a link to a
/// timestamped directory that the kubelet swaps.
#[test]
fn a_configmap_volume_is_read_through_its_data_link_once() {
    let root = tempfile::tempdir().unwrap();
    let app = root.path().join("ratelimit/config");
    std::fs::create_dir_all(&app).unwrap();
    let publish = |stamp: &str, text: &str| {
        let dir = app.join(stamp);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("limits.yaml"), text).unwrap();
        let tmp = app.join("..data_tmp");
        symlink(stamp, &tmp).unwrap();
        std::fs::rename(&tmp, app.join("..data")).unwrap();
    };
    publish("..2024_01_01_00_00_00.1", "first");
    symlink("..data/limits.yaml", app.join("limits.yaml")).unwrap();
    let src = runtime(root.path(), false);
    let files = src.read().unwrap();
    // Not also the copy inside the timestamped directory.
    assert_eq!(names(&files), ["config/limits.yaml"]);
    assert_eq!(files[0].text, "first");
    let before = src.fingerprint().unwrap();
    publish("..2024_01_01_00_00_01.2", "second");
    assert_ne!(src.fingerprint().unwrap(), before);
    assert_eq!(src.read().unwrap()[0].text, "second");
}

#[test]
fn dotfiles_follow_runtime_ignoredotfiles_and_edits_change_the_fingerprint() {
    let root = tempfile::tempdir().unwrap();
    let app = root.path().join("ratelimit/config");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("a.yaml"), "a").unwrap();
    std::fs::write(app.join(".swap"), "x").unwrap();
    assert_eq!(
        names(&runtime(root.path(), false).read().unwrap()),
        ["config/.swap", "config/a.yaml"]
    );
    let src = runtime(root.path(), true);
    assert_eq!(names(&src.read().unwrap()), ["config/a.yaml"]);
    let before = src.fingerprint().unwrap();
    std::fs::write(app.join("a.yaml"), "changed").unwrap();
    assert_ne!(src.fingerprint().unwrap(), before);
}

#[test]
fn missing_directories_and_oversized_files_are_named() {
    let root = tempfile::tempdir().unwrap();
    let e = runtime(root.path(), false).read().unwrap_err();
    assert!(format!("{e:#}").contains("RUNTIME_ROOT"), "{e:#}");
    let big = root.path().join("big.yaml");
    std::fs::write(&big, vec![b'#'; (MAX_FILE_BYTES + 1) as usize]).unwrap();
    let e = FileSource::File(big).read().unwrap_err();
    assert!(format!("{e:#}").contains("big.yaml"), "{e:#}");
}

#[test]
fn a_link_loop_does_not_trap_the_walk() {
    let root = tempfile::tempdir().unwrap();
    let app = root.path().join("ratelimit/config");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("a.yaml"), "a").unwrap();
    symlink(&app, app.join("loop")).unwrap();
    assert_eq!(
        names(&runtime(root.path(), false).read().unwrap()),
        ["config/a.yaml"]
    );
}
