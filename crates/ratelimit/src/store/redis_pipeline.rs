//! How one request's windows become a script call's KEYS and ARGV, and how a batch of
//! those calls goes to a single Redis as one pipeline (see `batch`).
use std::sync::Arc;

use redis::Script;
use redis::aio::ConnectionManager;

use super::batch::BatchReply;
use super::{Check, Counting, StoreError};
use crate::algorithm;
use crate::limit::Algorithm;

/// What `EVALSHA`/`EVAL` and a `ScriptInvocation` have in common: keys and args.
pub(super) trait ScriptArgs {
    fn key(&mut self, k: String);
    fn arg(&mut self, a: impl redis::ToRedisArgs);
}

impl ScriptArgs for redis::Cmd {
    fn key(&mut self, k: String) {
        redis::Cmd::arg(self, k);
    }
    fn arg(&mut self, a: impl redis::ToRedisArgs) {
        redis::Cmd::arg(self, a);
    }
}

impl ScriptArgs for redis::ScriptInvocation<'_> {
    fn key(&mut self, k: String) {
        redis::ScriptInvocation::key(self, k);
    }
    fn arg(&mut self, a: impl redis::ToRedisArgs) {
        redis::ScriptInvocation::arg(self, a);
    }
}

/// KEYS (all of them first, as `EVALSHA` wants them) then ARGV, as the store's Lua script reads them.
pub(super) fn script_args(
    to: &mut impl ScriptArgs,
    now_ms: u64,
    checks: &[&Check],
    counting: Counting,
) {
    for c in checks {
        let (bucket, _) = algorithm::bucket(now_ms, c.window.per_ms);
        to.key(format!("{}:{}", c.key, bucket));
        to.key(format!("{}:{}", c.key, bucket.wrapping_sub(1)));
    }
    to.arg(u8::from(counting == Counting::All));
    for c in checks {
        let (_, elapsed) = algorithm::bucket(now_ms, c.window.per_ms);
        to.arg(c.window.requests);
        to.arg(c.window.per_ms);
        to.arg(elapsed);
        to.arg(u8::from(c.window.algorithm == Algorithm::Sliding));
        to.arg(u8::from(c.enforce));
        to.arg(c.hits);
        to.arg(c.quota_group);
    }
}

/// Sends one batch of `EVALSHA`s as a pipeline. When Redis lost the script (a restart,
/// `SCRIPT FLUSH`), every command of the batch fails with NOSCRIPT and nothing was
/// counted: load it and send the batch again. A batch only partly NOSCRIPT is answered
/// as it is (resending it would count the others twice).
pub(super) async fn send_pipeline(
    mut conn: ConnectionManager,
    script: Arc<Script>,
    cmds: Vec<redis::Cmd>,
) -> BatchReply<Vec<i64>> {
    let mut pipe = redis::Pipeline::with_capacity(cmds.len());
    pipe.ignore_errors();
    for c in cmds {
        pipe.add_command(c);
    }
    let noscript = |r: &redis::RedisResult<Vec<i64>>| {
        r.as_ref()
            .is_err_and(|e| e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
    };
    let mut out: Vec<redis::RedisResult<Vec<i64>>> = pipe.query_async(&mut conn).await?;
    if !out.is_empty() && out.iter().all(noscript) {
        script.load_async(&mut conn).await?;
        out = pipe.query_async(&mut conn).await?;
    }
    Ok(out
        .into_iter()
        .map(|r| r.map_err(StoreError::from))
        .collect())
}
