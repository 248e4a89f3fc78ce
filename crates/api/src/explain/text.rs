//! `portcullis explain`'s text form.
use std::fmt;

use super::{Explanation, Outcome};

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {}{}", self.method, self.host, self.path)?;
        for note in &self.notes {
            writeln!(f, "  {note}")?;
        }
        writeln!(
            f,
            "  virtual host {} ({})",
            self.virtual_host, self.virtual_host_why
        )?;
        match self.outcome {
            Outcome::Refused | Outcome::NotFound => {
                return writeln!(
                    f,
                    "→ {} {}",
                    self.status.unwrap_or(0),
                    self.reason.as_deref().unwrap_or_default()
                );
            }
            Outcome::Redirected => {
                return writeln!(
                    f,
                    "→ 307 to {} ({})",
                    self.redirect.as_deref().unwrap_or_default(),
                    self.reason.as_deref().unwrap_or_default()
                );
            }
            Outcome::Routed => {}
        }
        let Some(s) = &self.served else {
            return Ok(());
        };
        writeln!(
            f,
            "→ Route {}, paths[{}] ({})",
            s.route, s.path_index, s.path
        )?;
        if !s.methods.is_empty() {
            writeln!(f, "  methods: {}", s.methods.join(", "))?;
        }
        if !s.headers.is_empty() {
            writeln!(f, "  headers: {}", s.headers.join("; "))?;
        }
        for b in &s.backends {
            writeln!(
                f,
                "  backend {} (weight {}, {}%)",
                b.service, b.weight, b.share
            )?;
            for d in &b.destinations {
                writeln!(
                    f,
                    "    {} {} weight {}{}{}",
                    d.name,
                    d.address,
                    d.weight,
                    d.region
                        .as_ref()
                        .map(|r| format!(", region {r}"))
                        .unwrap_or_default(),
                    if d.failover { ", failover" } else { "" }
                )?;
            }
        }
        match &s.auth {
            None => writeln!(f, "  auth: none (public)")?,
            Some(a) => writeln!(
                f,
                "  auth: {}{}",
                a.summary(),
                if a.forward_credential {
                    ", credential forwarded"
                } else {
                    ", credential removed before the backend"
                }
            )?,
        }
        for l in &s.rate_limits {
            writeln!(
                f,
                "  rate limit {} by [{}]: {} ({} authentication; on failure {}{})",
                l.name,
                l.by.join(", "),
                l.windows.join(", "),
                if l.after_authentication {
                    "after"
                } else {
                    "before"
                },
                l.on_failure,
                if l.shadow { "; shadow" } else { "" }
            )?;
        }
        writeln!(
            f,
            "  timeout {}, idle {}; retries {} on {}{}, backoff {}{}",
            s.timeout,
            s.idle_timeout,
            s.retry.attempts,
            s.retry.on.join(","),
            s.retry
                .per_try_timeout
                .as_ref()
                .map(|t| format!(", {t} per try"))
                .unwrap_or_default(),
            s.retry.backoff,
            if s.hedge {
                "; hedged on per-try timeout"
            } else {
                ""
            }
        )?;
        if !self.lost.is_empty() {
            writeln!(f, "matched but lost:")?;
            for l in &self.lost {
                writeln!(
                    f,
                    "  Route {}, paths[{}] ({}): {} [{}]",
                    l.route, l.path_index, l.path, l.why, l.step
                )?;
            }
        }
        Ok(())
    }
}
