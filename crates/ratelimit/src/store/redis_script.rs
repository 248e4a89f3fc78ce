//! The store's Lua script, how one request's windows become its part of a script
//! call, and how a batch of requests goes to a single Redis as one script call (see
//! `batch`): one command for Redis to parse and one script to enter per batch, not
//! per request, which is most of what a decision costs Redis.
use std::sync::Arc;

use redis::Script;
use redis::aio::ConnectionManager;

use super::batch::BatchReply;
use super::{Check, Counting, StoreError};
use crate::algorithm;
use crate::limit::Algorithm;

/// Mirrors `algorithm::fits` and `store::admits` (integral arithmetic scaled by the
/// window length), for every request of a batch in turn.
///
/// KEYS: every request's keys in order; per window the current bucket, then the
/// previous one. ARGV: the number of requests, then per request: count-all (0|1), its
/// number of windows, and per window: limit, per_ms, elapsed_ms, sliding (0|1),
/// enforce (0|1), hits, quota group (0: none).
///
/// Returns per request {counted (1|0), prev_1, curr_1, prev_2, curr_2, ...} (counts
/// before counting), or {-1, 0, 0, ...} when Redis refused one of its keys (a key
/// of another type, a counter that is not a number): that request alone fails.
///
/// A counter's TTL is set when the script creates it: the window's end plus a second
/// (plus one more window when sliding, as the previous bucket is still read then).
/// Every later hit would set the same deadline, so it is not set again.
pub(super) const SCRIPT: &str = r#"
local function decide(k, a, n, count_all)
  -- What the counting loop needs, kept from the reading loop: hits per window, and
  -- the TTL of a counter this call creates (nil for one that exists).
  local prev, curr, adds, ttls = {}, {}, {}, {}
  local plain_over = false
  local group_over = {}
  for i = 1, n do
    local b = a + (i - 1) * 7
    local limit, per, elapsed = tonumber(ARGV[b]), tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
    local enforce = ARGV[b + 4] == '1'
    local hits, group = tonumber(ARGV[b + 5]), ARGV[b + 6]
    local got
    if ARGV[b + 3] == '1' then
      got = redis.call('MGET', KEYS[k + 2 * i - 1], KEYS[k + 2 * i])
    else
      got = {redis.call('GET', KEYS[k + 2 * i - 1])}
    end
    local c, p = tonumber(got[1] or '0'), tonumber(got[2] or '0')
    if c == nil or p == nil then error('a counter is not a number') end
    prev[i], curr[i], adds[i] = p, c, hits
    if not got[1] then
      ttls[i] = per - elapsed + 1000
      if ARGV[b + 3] == '1' then ttls[i] = ttls[i] + per end
    end
    local over = enforce and ((c + hits) * per + p * (per - elapsed) > limit * per)
    if group == '0' then
      if over then plain_over = true end
    elseif group_over[group] == nil then
      group_over[group] = over
    elseif over then
      group_over[group] = true
    end
  end
  local admitted = not plain_over
  if admitted then
    local groups, fitting = 0, 0
    for _, over in pairs(group_over) do
      groups = groups + 1
      if not over then fitting = fitting + 1 end
    end
    if groups > 0 and fitting == 0 then admitted = false end
  end
  local counted = admitted or count_all
  if counted then
    for i = 1, n do
      local key = KEYS[k + 2 * i - 1]
      redis.call('INCRBY', key, adds[i])
      if ttls[i] then redis.call('PEXPIRE', key, ttls[i]) end
    end
  end
  return counted, prev, curr
end

local out = {}
local k, a = 0, 2
for _ = 1, tonumber(ARGV[1]) do
  local count_all, n = ARGV[a] == '1', tonumber(ARGV[a + 1])
  local ok, counted, prev, curr = pcall(decide, k, a + 2, n, count_all)
  if ok then
    out[#out + 1] = counted and 1 or 0
    for i = 1, n do
      out[#out + 1] = prev[i]
      out[#out + 1] = curr[i]
    end
  else
    out[#out + 1] = -1
    for _ = 1, 2 * n do out[#out + 1] = 0 end
  end
  k = k + 2 * n
  a = a + 2 + 7 * n
end
return out
"#;

/// One request's part of a script call: its keys and its arguments.
pub(super) struct Call {
    keys: Vec<String>,
    args: Vec<u64>,
}

/// Arguments each window adds after the request's two.
const PER_WINDOW: usize = 7;

impl Call {
    pub(super) fn new(now_ms: u64, checks: &[&Check], counting: Counting) -> Call {
        let mut keys = Vec::with_capacity(2 * checks.len());
        let mut args = Vec::with_capacity(2 + PER_WINDOW * checks.len());
        args.push(u64::from(counting == Counting::All));
        args.push(checks.len() as u64);
        for c in checks {
            let (bucket, elapsed) = algorithm::bucket(now_ms, c.window.per_ms);
            keys.push(format!("{}:{}", c.key, bucket));
            keys.push(format!("{}:{}", c.key, bucket.wrapping_sub(1)));
            args.extend([
                u64::from(c.window.requests),
                c.window.per_ms,
                elapsed,
                u64::from(c.window.algorithm == Algorithm::Sliding),
                u64::from(c.enforce),
                u64::from(c.hits),
                u64::from(c.quota_group),
            ]);
        }
        Call { keys, args }
    }

    fn windows(&self) -> usize {
        self.keys.len() / 2
    }
}

/// What `EVALSHA` and a `ScriptInvocation` have in common: keys and args.
pub(super) trait ScriptArgs {
    fn key(&mut self, k: &str);
    fn arg(&mut self, a: u64);
}

impl ScriptArgs for redis::Cmd {
    fn key(&mut self, k: &str) {
        redis::Cmd::arg(self, k);
    }
    fn arg(&mut self, a: u64) {
        redis::Cmd::arg(self, a);
    }
}

impl ScriptArgs for redis::ScriptInvocation<'_> {
    fn key(&mut self, k: &str) {
        redis::ScriptInvocation::key(self, k);
    }
    fn arg(&mut self, a: u64) {
        redis::ScriptInvocation::arg(self, a);
    }
}

/// KEYS (all of them first, as `EVALSHA` wants them), then ARGV, for `calls` in order.
pub(super) fn script_args(to: &mut impl ScriptArgs, calls: &[Call]) {
    for k in calls.iter().flat_map(|c| &c.keys) {
        to.key(k);
    }
    to.arg(calls.len() as u64);
    for a in calls.iter().flat_map(|c| &c.args) {
        to.arg(*a);
    }
}

/// The script's flat reply cut into each call's part, `[counted, prev_1, curr_1, …]`.
pub(super) fn split(out: Vec<i64>, calls: &[Call]) -> BatchReply<Vec<i64>> {
    let want: usize = calls.iter().map(|c| 1 + 2 * c.windows()).sum();
    if out.len() != want {
        return Err(StoreError::BadReply(format!(
            "{} values for {} requests ({want} expected)",
            out.len(),
            calls.len()
        )));
    }
    let mut rest = out.into_iter();
    Ok(calls
        .iter()
        .map(|c| {
            let part: Vec<i64> = rest.by_ref().take(1 + 2 * c.windows()).collect();
            if part[0] < 0 {
                Err(StoreError::BadReply(
                    "Redis refused this request's counters (a key of another type, or a counter that is not a number)".into(),
                ))
            } else {
                Ok(part)
            }
        })
        .collect())
}

/// Sends one batch as one `EVALSHA`. When Redis lost the script (a restart, `SCRIPT
/// FLUSH`), the call fails with NOSCRIPT and nothing was counted: load it and send
/// the batch again.
pub(super) async fn send_batch(
    mut conn: ConnectionManager,
    script: Arc<Script>,
    calls: Vec<Call>,
) -> BatchReply<Vec<i64>> {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash())
        .arg(calls.iter().map(|c| c.keys.len()).sum::<usize>());
    script_args(&mut cmd, &calls);
    let noscript = |e: &redis::RedisError| {
        e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
    };
    let out: Vec<i64> = match cmd.query_async(&mut conn).await {
        Err(e) if noscript(&e) => {
            script.load_async(&mut conn).await?;
            cmd.query_async(&mut conn).await?
        }
        r => r?,
    };
    split(out, &calls)
}

#[cfg(test)]
#[path = "redis_script_tests.rs"]
mod tests;
