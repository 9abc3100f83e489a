//! The Lua scripts that make every Redis step one atomic call.
//!
//! Keys under the prefix `P` (default `banditd`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:epoch` | string | set once when a replica first finds Redis empty; a change means Redis lost its data |
//! | `P:campaigns` | hash | campaign id → `{"gen", "version", "spec"}` (JSON) |
//! | `P:gen` | counter | the last campaign generation handed out |
//! | `P:gens` | set | live generations |
//! | `P:s:GEN` | hash | the merged totals of generation GEN (field → number) |
//! | `P:s:GEN:REPLICA` | hash | what REPLICA has shipped of them (its own totals) |
//! | `P:seq` | hash | replica → the last batch sequence number applied |
//! | `P:replicas` | hash | replica → `{"url", "seen_ms"}` (JSON), for forwarding |
//!
//! The scripts name keys they compute from the prefix rather than
//! declaring them, so they need a single Redis (or a replicated primary),
//! not Redis Cluster.

/// Applies one batch of a replica's absolute totals.
///
/// ARGV: prefix, replica, seq, then groups `gen, count, field₁, value₁, …`.
/// A batch whose sequence number is not above the replica's last one is
/// ignored (a retry of a batch that was applied, or an older batch
/// overtaken by a newer one). Each field's merged total moves by the
/// difference between the new value and the replica's previous one, so
/// applying the same totals twice changes nothing. Fields of generations
/// no longer live (a deleted campaign) are dropped. Returns
/// `{applied (0|1), last seq}`.
pub const SHIP: &str = r#"
local p, replica, seq = ARGV[1], ARGV[2], tonumber(ARGV[3])
local last = tonumber(redis.call('HGET', p .. ':seq', replica) or '0')
if seq <= last then return {0, tostring(last)} end
local i = 4
while i <= #ARGV do
  local gen, n = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local merged = p .. ':s:' .. gen
  local own = merged .. ':' .. replica
  local live = redis.call('SISMEMBER', p .. ':gens', gen) == 1
  for _ = 1, n do
    local f, v = ARGV[i], tonumber(ARGV[i + 1])
    i = i + 2
    if live then
      local old = tonumber(redis.call('HGET', own, f) or '0')
      local d = v - old
      if d ~= 0 then
        local m = tonumber(redis.call('HINCRBYFLOAT', merged, f, string.format('%.17g', d)))
        if m == 0 then redis.call('HDEL', merged, f) end
        if v == 0 then
          redis.call('HDEL', own, f)
        else
          redis.call('HSET', own, f, ARGV[i - 1])
        end
      end
    end
  end
end
redis.call('HSET', p .. ':seq', replica, tostring(seq))
return {1, tostring(seq)}
"#;

/// The registered replicas (flat id, record). ARGV: prefix.
///
/// Read when a reward names a replica this one has not heard of yet, or a
/// caller-chosen id is not known here: a replica that joined since the
/// last pull must still be asked.
pub const PEERS: &str = r#"
return redis.call('HGETALL', ARGV[1] .. ':replicas')
"#;

/// Everything a replica pulls, read at one instant.
///
/// ARGV: prefix, replica, its advertised URL, now (ms). Registers the
/// replica (heartbeat) and returns `{epoch or "", campaigns (flat id,
/// record), replicas (flat id, record), {gen, merged (flat), own (flat)}…}`.
pub const PULL: &str = r#"
local p, replica, url, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
redis.call('HSET', p .. ':replicas', replica, cjson.encode({url = url, seen_ms = tonumber(now)}))
local epoch = redis.call('GET', p .. ':epoch') or ''
local campaigns = redis.call('HGETALL', p .. ':campaigns')
local replicas = redis.call('HGETALL', p .. ':replicas')
local stats = {}
for _, gen in ipairs(redis.call('SMEMBERS', p .. ':gens')) do
  local merged = p .. ':s:' .. gen
  table.insert(stats, {gen, redis.call('HGETALL', merged), redis.call('HGETALL', merged .. ':' .. replica)})
end
return {epoch, campaigns, replicas, stats}
"#;

/// Seeds an empty Redis, atomically: a new epoch and the calling
/// replica's campaigns, so that no replica sees the epoch without them (a
/// campaign deleted right after the seed stays deleted).
///
/// ARGV: prefix, a new epoch, then (id, spec JSON) pairs. Returns 1 when
/// this call seeded, 0 when Redis already had an epoch (nothing changed).
pub const INIT: &str = r#"
local p = ARGV[1]
if redis.call('EXISTS', p .. ':epoch') == 1 then return 0 end
redis.call('SET', p .. ':epoch', ARGV[2])
for i = 3, #ARGV - 1, 2 do
  local id, spec = ARGV[i], ARGV[i + 1]
  if not redis.call('HGET', p .. ':campaigns', id) then
    local gen = redis.call('INCR', p .. ':gen')
    redis.call('HSET', p .. ':campaigns', id, '{"gen":' .. gen .. ',"version":1,"spec":' .. spec .. '}')
    redis.call('SADD', p .. ':gens', tostring(gen))
  end
end
return 1
"#;

/// The epoch in force, or "" when Redis is empty. ARGV: prefix.
pub const EPOCH: &str = r#"
return redis.call('GET', ARGV[1] .. ':epoch') or ''
"#;

/// Creates a campaign unless its id is taken.
///
/// ARGV: prefix, id, spec (JSON). Returns `{1, gen}` when created,
/// `{0, record}` when the id exists.
pub const CREATE: &str = r#"
local p, id, spec = ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('HGET', p .. ':campaigns', id)
if cur then return {0, cur} end
local gen = redis.call('INCR', p .. ':gen')
local rec = '{"gen":' .. gen .. ',"version":1,"spec":' .. spec .. '}'
redis.call('HSET', p .. ':campaigns', id, rec)
redis.call('SADD', p .. ':gens', tostring(gen))
return {1, tostring(gen)}
"#;

/// Replaces a campaign's definition if it is still the version read.
///
/// ARGV: prefix, id, gen, version, new spec (JSON). Returns `{1, version}`
/// on success, `{0, record or ""}` when the campaign changed or is gone.
pub const UPDATE: &str = r#"
local p, id, gen, version, spec = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local cur = redis.call('HGET', p .. ':campaigns', id)
if not cur then return {0, ''} end
local r = cjson.decode(cur)
if r.gen ~= gen or r.version ~= version then return {0, cur} end
local next = version + 1
redis.call('HSET', p .. ':campaigns', id, '{"gen":' .. gen .. ',"version":' .. next .. ',"spec":' .. spec .. '}')
return {1, tostring(next)}
"#;

/// Deletes a campaign and its statistics. ARGV: prefix, id. Returns 1 when
/// it existed, 0 otherwise.
pub const DELETE: &str = r#"
local p, id = ARGV[1], ARGV[2]
local cur = redis.call('HGET', p .. ':campaigns', id)
if not cur then return 0 end
local gen = tostring(cjson.decode(cur).gen)
redis.call('HDEL', p .. ':campaigns', id)
redis.call('SREM', p .. ':gens', gen)
local merged = p .. ':s:' .. gen
redis.call('DEL', merged)
for _, r in ipairs(redis.call('HKEYS', p .. ':replicas')) do
  redis.call('DEL', merged .. ':' .. r)
end
return 1
"#;
