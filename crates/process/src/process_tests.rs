use super::*;

const PROC_STAT: &str = "cpu  1 2 3 4\nbtime 1700000000\nprocesses 42\n";

#[test]
fn stat_fields_are_counted_from_the_last_parenthesis() {
    // A command name with spaces and a `)` of its own must not shift the fields.
    let stat = "4242 (evil) name (x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                250 150 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615";
    let p = parse_stat(stat, PROC_STAT, 100, 4096).unwrap();
    assert_eq!(
        p,
        ProcessStats {
            cpu_seconds: 4.0,
            start_time_seconds: 1_700_000_123.45,
            virtual_bytes: 104_857_600,
            resident_bytes: 2560 * 4096,
            threads: 7,
            open_fds: None,
            max_fds: None,
        }
    );
}

#[test]
fn truncated_or_garbled_stat_gives_nothing_instead_of_wrong_numbers() {
    assert_eq!(parse_stat("4242 (x) S 1 2 3", PROC_STAT, 100, 4096), None);
    assert_eq!(
        parse_stat("no parenthesis at all", PROC_STAT, 100, 4096),
        None
    );
    let stat = "1 (x) S 1 1 1 0 -1 0 0 0 0 0 ten 1 0 0 20 0 1 0 1 1 1 1";
    assert_eq!(parse_stat(stat, PROC_STAT, 100, 4096), None);
    let ok = "1 (x) S 1 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 1 1 1 1";
    assert_eq!(parse_stat(ok, "cpu 1 2\n", 100, 4096), None, "no btime");
    // A zero tick rate cannot divide by zero.
    assert!(parse_stat(ok, PROC_STAT, 0, 4096).is_some());
}

#[test]
fn max_open_files_is_the_soft_limit() {
    let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                  Max cpu time              unlimited            unlimited            seconds   \n\
                  Max open files            1024                 524288               files     \n";
    assert_eq!(parse_max_open_files(limits), Some(1024));
    assert_eq!(
        parse_max_open_files("Max open files unlimited unlimited files"),
        None
    );
    assert_eq!(parse_max_open_files(""), None);
}

/// One sample of `name` in the text exposition.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn every_metrics_page_carries_this_process() {
    let text = crate::render_metrics(&prometheus::Registry::new());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = sample(&text, "process_start_time_seconds");
    // Started before now, and not before this test binary could have been built.
    assert!(
        start <= now + 1.0 && start > now - 86_400.0,
        "start {start}, now {now}"
    );
    assert!(sample(&text, "process_resident_memory_bytes") > 1e6);
    assert!(
        sample(&text, "process_virtual_memory_bytes")
            >= sample(&text, "process_resident_memory_bytes")
    );
    assert!(sample(&text, "process_cpu_seconds_total") >= 0.0);
    assert!(sample(&text, "process_threads") >= 1.0);
    assert!(sample(&text, "process_max_fds") >= sample(&text, "process_open_fds"));
    assert!(
        text.contains("# TYPE process_cpu_seconds_total counter"),
        "{text}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.lines().any(|l| l.starts_with("portcullis_build_info{")
            && l.contains(&format!("version=\"{version}\""))
            && l.contains("component=")
            && l.ends_with(" 1")),
        "{text}"
    );
}

#[test]
fn open_fds_follows_the_files_this_process_holds() {
    let open = || {
        sample(
            &crate::render_metrics(&prometheus::Registry::new()),
            "process_open_fds",
        )
    };
    let dir = std::env::temp_dir();
    // Other threads of the test harness may open a file or two meanwhile: hold many
    // more than that, and compare.
    let before = open();
    let held: Vec<std::fs::File> = (0..64)
        .map(|i| {
            let p = dir.join(format!("portcullis-fd-test-{}-{i}", std::process::id()));
            let f = std::fs::File::create(&p).unwrap();
            std::fs::remove_file(&p).unwrap();
            f
        })
        .collect();
    let during = open();
    drop(held);
    assert!(
        during >= before + 48.0,
        "before {before}, holding 64 more: {during}"
    );
}

#[test]
fn cpu_time_grows_with_work() {
    let cpu = || {
        sample(
            &crate::render_metrics(&prometheus::Registry::new()),
            "process_cpu_seconds_total",
        )
    };
    let before = cpu();
    let t = std::time::Instant::now();
    let mut x = 0u64;
    while t.elapsed() < std::time::Duration::from_millis(300) {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    // Clock ticks are 10 ms; a busy machine may give this loop little of its 300 ms.
    let after = cpu();
    assert!(
        after >= before + 0.01,
        "300 ms of busy work, cpu {before} -> {after}"
    );
}
