//! Settings renamed so that one setting has one name, with the old names still read
//! for one release. clap knows one `env` per flag, so before parsing, the command line
//! is rewritten: an old flag becomes the new one, and an old environment variable
//! becomes the new flag appended to the command line (unless the new flag or variable
//! is set, which win). Each use of an old name yields a warning, logged once logging
//! is up.
//!
//! The convention: a service's own settings are `PORTCULLIS_<SERVICE>_*` (its listen
//! address `PORTCULLIS_<SERVICE>_GRPC_ADDR`), and the control plane's pointer to a
//! service is `PORTCULLIS_<SERVICE>_ADDR`, as for authz and ratelimit.
use std::ffi::OsString;

pub struct Renamed {
    pub old_env: &'static str,
    pub new_env: &'static str,
    /// The old flag, when the flag was renamed too.
    pub old_flag: Option<&'static str>,
    pub new_flag: &'static str,
    /// The subcommands that read the setting.
    pub commands: &'static [&'static str],
}

const CONTROL_PLANE: &[&str] = &["serve", "controller"];

/// Deprecated in 0.2 (issue 19); to be removed in the release after.
pub const RENAMED: &[Renamed] = &[
    Renamed {
        old_env: "PORTCULLIS_ACCESS_LOG",
        new_env: "PORTCULLIS_ACCESSLOG_FILE",
        old_flag: Some("--access-log"),
        new_flag: "--accesslog-file",
        commands: CONTROL_PLANE,
    },
    Renamed {
        old_env: "PORTCULLIS_ACCESS_LOG_SERVICE",
        new_env: "PORTCULLIS_ACCESSLOG_ADDR",
        old_flag: Some("--access-log-service"),
        new_flag: "--accesslog-addr",
        commands: CONTROL_PLANE,
    },
    Renamed {
        old_env: "PORTCULLIS_ACCESS_LOG_HEADERS",
        new_env: "PORTCULLIS_ACCESSLOG_HEADERS",
        old_flag: Some("--access-log-headers"),
        new_flag: "--accesslog-headers",
        commands: CONTROL_PLANE,
    },
    // The service's listen address: on the control plane this name is now the
    // pointer to the service (above), so only `accesslog` reads it the old way.
    Renamed {
        old_env: "PORTCULLIS_ACCESSLOG_ADDR",
        new_env: "PORTCULLIS_ACCESSLOG_GRPC_ADDR",
        old_flag: None,
        new_flag: "--grpc-addr",
        commands: &["accesslog"],
    },
];

/// Global flags that take a value as the next argument (so that value is not taken
/// for the subcommand).
const GLOBAL_VALUE_FLAGS: &[&str] = &["--log", "--otlp-endpoint"];

/// `args` (the process's, program name first) with renamed settings replaced, and one
/// warning per old name used. `env` reads an environment variable.
pub fn rewrite(
    args: Vec<OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> (Vec<OsString>, Vec<String>) {
    let mut warnings = Vec::new();
    let Some(at) = subcommand_at(&args) else {
        return (args, warnings);
    };
    let command = args[at].to_str().unwrap_or_default().to_owned();
    let (mut head, mut tail): (Vec<OsString>, Vec<OsString>) = {
        let mut args = args;
        let tail = args.split_off(at + 1);
        (args, tail)
    };
    for r in RENAMED
        .iter()
        .filter(|r| r.commands.contains(&command.as_str()))
    {
        if let Some(old) = r.old_flag {
            for arg in tail.iter_mut() {
                let Some(s) = arg.to_str() else { continue };
                let renamed = if s == old {
                    Some(r.new_flag.to_owned())
                } else {
                    s.strip_prefix(old)
                        .and_then(|v| v.strip_prefix('='))
                        .map(|v| format!("{}={v}", r.new_flag))
                };
                if let Some(new) = renamed {
                    warnings.push(format!(
                        "{old} is deprecated and will be removed; use {}",
                        r.new_flag
                    ));
                    *arg = new.into();
                }
            }
        }
        let Some(value) = env(r.old_env) else {
            continue;
        };
        if env(r.new_env).is_some() {
            warnings.push(format!(
                "{} is deprecated and ignored because {} is set; remove it",
                r.old_env, r.new_env
            ));
        } else if has_flag(&tail, r.new_flag) {
            warnings.push(format!(
                "{} is deprecated and ignored because {} is given; remove it",
                r.old_env, r.new_flag
            ));
        } else {
            warnings.push(format!(
                "{} is deprecated and will be removed; rename it {}",
                r.old_env, r.new_env
            ));
            let mut flag = OsString::from(format!("{}=", r.new_flag));
            flag.push(value);
            tail.push(flag);
        }
    }
    head.append(&mut tail);
    (head, warnings)
}

/// Index of the subcommand: the first argument after the program name that is
/// neither a flag nor the value of a global flag.
fn subcommand_at(args: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_str()?;
        if GLOBAL_VALUE_FLAGS.contains(&a) {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return Some(i);
        }
    }
    None
}

fn has_flag(args: &[OsString], flag: &str) -> bool {
    args.iter()
        .filter_map(|a| a.to_str())
        .any(|a| a == flag || a.strip_prefix(flag).is_some_and(|v| v.starts_with('=')))
}
