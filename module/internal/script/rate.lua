-- CHARON.RATE as a server-side script: Charon's script engine, for servers that cannot
-- load the module. Same rules, same reply (the 11 integers of the module's RESP2 reply,
-- in its order). Built and sent by the Go runner (module/internal/script); not a public
-- interface: ARGV is validated there.
--
-- KEYS[1] = the domain key; KEYS[2] = the GLOBAL key (when ARGV names global caps).
-- ARGV: now (AT, ms), max, min, flags (1 DRYRUN, 2 CLOSED), then
--       nt, nt x (limit window active cooldown skippable),
--       nc, nc x (n window)                      per-domain caps (HARD n is n/1000)
--       ngc, ngc x (n window)                    GLOBAL caps; ngc = -1 without GLOBAL
--       [once token]
--
-- The script never reads the server's clock (no TIME): the client sends the time, and
-- the effective time never goes back (rule 8) because each key stores the newest.
--
-- Storage: each key is a HASH. Field "@" is the header: a 4-byte magic ("CRd1" for a
-- domain key, "CRg1" for a global key) and little-endian doubles. Every log (a tier's
-- hits, the key's grants, a long cap's buckets) is a queue of hash fields
-- "<log>.<seq>" = (ts, cumulative count mod 2^52), oldest first: appended at the back,
-- popped from the front once out of every window, so a request costs O(1) amortized
-- per log whatever the traffic; the header keeps each log's head, next seq, the count
-- before its head, its first and last ts and the cumulative count at its back, so a
-- window's sum is one subtraction (a binary search over the front when the oldest
-- entries left the window since the last write, which only a write removes).
--   domain header: newest, nt, nt x (entered, entry, log), grants log, nc,
--                  nc x (window, log), once queue head, once queue next, newest
--                  token's t0 (-1: none)
--   global header: newest, grants log, nc, nc x (window, log)
--   log (6 doubles): head seq, next seq, cum before head, first ts, last ts (-1: no
--                    entry ever), cum at back
-- ONCE: "o:<token>" = t0 + the reply (11 doubles); queue "q.<seq>" = t0 + token.

local M = 4503599627370496 -- cumulative counts are kept mod 2^52 (exact in a double)

local function typeError(key, ty)
  if ty == 'charon-rl' or ty == 'charon-hd' then
    return 'WRONGTYPE ' .. key .. ' was written by the Charon module engine (type ' .. ty ..
      '): the script engine does not read it; use the module while it lives, or delete it'
  end
  return 'WRONGTYPE Operation against a key holding the wrong kind of value'
end

-- readHeader returns the header string of key (nil when absent) or raises an error.
local function readHeader(key, magic, what)
  local ty = redis.call('TYPE', key).ok
  if ty == 'none' then return nil end
  if ty ~= 'hash' then return error({err = typeError(key, ty)}) end
  local h = redis.call('HGET', key, '@')
  if not h then return error({err = typeError(key, ty)}) end
  local m = string.sub(h, 1, 4)
  if m ~= magic then
    if m == 'CRg1' then return error({err = 'WRONGTYPE ' .. key .. ' holds a global rate log, not ' .. what}) end
    if m == 'CRd1' then return error({err = 'WRONGTYPE ' .. key .. ' holds a domain rate log, not ' .. what}) end
    if m == 'CRh1' then return error({err = 'WRONGTYPE ' .. key .. ' holds holds (CHARON.RESERVE), not ' .. what}) end
    return error({err = 'ERR ' .. key .. ': unknown Charon script-engine format ' .. string.format('%q', m)})
  end
  return h
end

-- Header reader over the doubles after the magic.
local function reader(h)
  local pos = 5
  return function()
    local v
    v, pos = struct.unpack('<d', h, pos)
    return v
  end
end

local function newLog(key, p)
  return {key = key, p = p, h = 0, n = 0, b = 0, f = -1, l = -1, c = 0, cache = {}}
end

local function readLog(rd, key, p)
  local L = newLog(key, p)
  L.h, L.n, L.b, L.f, L.l, L.c = rd(), rd(), rd(), rd(), rd(), rd()
  return L
end

local function packLog(out, L)
  out[#out + 1] = struct.pack('<dddddd', L.h, L.n, L.b, L.f, L.l, L.c)
end

-- entry returns (ts, cum) of the log's entry seq.
local function entry(L, seq)
  local v = L.cache[seq]
  if not v then
    v = redis.call('HGET', L.key, L.p .. string.format('%.0f', seq))
    if not v then return error({err = 'ERR corrupt Charon script-engine value in ' .. L.key .. ': entry ' .. L.p .. seq .. ' missing'}) end
    L.cache[seq] = v
  end
  local ts, cum = struct.unpack('<dd', v)
  return ts, cum
end

-- firstAt: the first seq whose ts >= lower, given head ts < lower <= last ts.
local function firstAt(L, lower)
  local lo, hi = L.h, L.n - 1
  local step = 1
  while lo + step < hi do
    local probe = lo + step
    if entry(L, probe) >= lower then hi = probe; break end
    lo = probe
    step = step * 2
  end
  while hi - lo > 1 do
    local mid = math.floor((lo + hi) / 2)
    if entry(L, mid) >= lower then hi = mid else lo = mid end
  end
  return hi
end

-- sum of the log's counts with ts >= lower.
local function logSum(L, lower)
  if L.h == L.n or L.l < lower then return 0 end
  if L.f >= lower then return (L.c - L.b) % M end
  local j = firstAt(L, lower)
  local _, cum = entry(L, j - 1)
  return (L.c - cum) % M
end

local function delField(W, L, seq)
  W.dels[#W.dels + 1] = L.p .. string.format('%.0f', seq)
end

-- pop drops the entries with ts < lower.
local function logPop(W, L, lower)
  if L.h == L.n or L.f >= lower then return end
  if L.l < lower then
    for s = L.h, L.n - 1 do delField(W, L, s) end
    L.b, L.h = L.c, L.n
    return
  end
  local j = firstAt(L, lower)
  local ts = entry(L, j)
  local _, cum = entry(L, j - 1)
  for s = L.h, j - 1 do delField(W, L, s) end
  L.h, L.b, L.f = j, cum, ts
end

local function logDrop(W, L)
  for s = L.h, L.n - 1 do delField(W, L, s) end
  L.b, L.h = L.c, L.n
end

-- push adds n at ts (merged into the back entry when it is at ts).
local function logPush(W, L, ts, n)
  L.c = (L.c + n) % M
  local v = struct.pack('<dd', ts, L.c)
  if L.h ~= L.n and L.l == ts then
    W.sets[#W.sets + 1] = L.p .. string.format('%.0f', L.n - 1)
    W.sets[#W.sets + 1] = v
    L.cache[L.n - 1] = v
  else
    if L.h == L.n then L.f = ts end
    W.sets[#W.sets + 1] = L.p .. string.format('%.0f', L.n)
    W.sets[#W.sets + 1] = v
    L.cache[L.n] = v
    L.n = L.n + 1
  end
  L.l = ts
end

-- flush deletes, then sets (a ONCE token remembered again replaces its old self).
local function flush(key, W)
  local d = W.dels
  for i = 1, #d, 1000 do
    redis.call('HDEL', key, unpack(d, i, math.min(i + 999, #d)))
  end
  local s = W.sets
  for i = 1, #s, 1000 do
    redis.call('HSET', key, unpack(s, i, math.min(i + 999, #s)))
  end
end

local function grain(w)
  if w <= 1000 then return 1 end
  return math.ceil(w / 1000)
end

-------------------------------------------------------------------------------
-- Request.
local now = tonumber(ARGV[1])
local maxv = tonumber(ARGV[2])
local minv = tonumber(ARGV[3])
local flags = tonumber(ARGV[4])
local dry = flags % 2 == 1
local closed = math.floor(flags / 2) % 2 == 1
local a = 5
local nt = tonumber(ARGV[a]); a = a + 1
local TL, TW, TA, TC, TS = {}, {}, {}, {}, {}
for i = 1, nt do
  TL[i], TW[i], TA[i], TC[i] = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  TS[i] = ARGV[a + 4] == '1'
  a = a + 5
end
local function readCaps()
  local n = tonumber(ARGV[a]); a = a + 1
  local caps = {}
  for i = 1, n do
    caps[i] = {n = tonumber(ARGV[a]), w = tonumber(ARGV[a + 1])}
    a = a + 2
  end
  return caps, n
end
local dcaps = readCaps()
local gcaps, ngc = readCaps()
local hasG = ngc >= 0
local once = ARGV[a]
if once == '' then once = nil end

local key = KEYS[1]
local gkey = KEYS[2]

-------------------------------------------------------------------------------
-- Stored state.
local dh = readHeader(key, 'CRd1', 'a domain rate log')
local newest, snt = -1, 0
local entered, entry0 = {}, {}
local tlog = {}
local glog
local scaps = {} -- stored long caps by window
local qh, qn, qt = 0, 0, -1
if dh then
  local rd = reader(dh)
  newest = rd()
  snt = rd()
  for i = 1, snt do
    entered[i] = rd() == 1
    entry0[i] = rd()
    tlog[i] = readLog(rd, key, i .. '.')
  end
  glog = readLog(rd, key, 'g.')
  local nc = rd()
  for _ = 1, nc do
    local w = rd()
    scaps[w] = readLog(rd, key, 'c' .. string.format('%.0f', w) .. '.')
  end
  qh, qn, qt = rd(), rd(), rd()
else
  glog = newLog(key, 'g.')
end
for i = snt + 1, nt do
  entered[i] = false
  entry0[i] = 0
  tlog[i] = newLog(key, i .. '.')
end

local gh, gnewest, gglog
local gscaps = {}
if hasG then
  gh = readHeader(gkey, 'CRg1', 'a global rate log')
  gnewest = -1
  if gh then
    local rd = reader(gh)
    gnewest = rd()
    gglog = readLog(rd, gkey, 'g.')
    local nc = rd()
    for _ = 1, nc do
      local w = rd()
      gscaps[w] = readLog(rd, gkey, 'c' .. string.format('%.0f', w) .. '.')
    end
  else
    gglog = newLog(gkey, 'g.')
  end
end

-- Rule 8.
local t = now
if dh and newest > t then t = newest end
if hasG and gh and gnewest > t then t = gnewest end

-- Rule 11: a remembered token is a replay.
local onceField
if once then
  onceField = 'o:' .. once
  if dh then
    local v = redis.call('HGET', key, onceField)
    if v then
      local t0 = struct.unpack('<d', v)
      if t - t0 <= 10000 then
        local r = {}
        local pos = 9
        for i = 1, 11 do r[i], pos = struct.unpack('<d', v, pos) end
        return r
      end
    end
  end
end

-- The bucket logs of the long caps the keys hold. A cap a key does not hold (new, or
-- dropped by a grant that did not name it) counts what the key holds of its window:
-- its second log (rule 10: "a cap added later counts only the hits the key still
-- holds"); the grant that adds it starts its log from there.
for _, c in ipairs(dcaps) do
  if c.w > 1000 then c.log = scaps[c.w] end
end
if hasG then
  for _, c in ipairs(gcaps) do
    if c.w > 1000 then c.log = gscaps[c.w] end
  end
end

local INACTIVE, ACTIVE, COOLDOWN = 0, 1, 2
local function stateOf(i, s)
  if not entered[i] then return INACTIVE end
  local e = entry0[i]
  if e <= s and s <= e + TA[i] then return ACTIVE end
  if e + TA[i] < s and s <= e + TA[i] + TC[i] then return COOLDOWN end
  return INACTIVE
end

-- Rule 2: hits in tier i's window at s.
local function window(i, s, st)
  if i > 1 and st == INACTIVE then return 0 end
  local lower = s - TW[i]
  if i > 1 and entry0[i] > lower then lower = entry0[i] end
  return logSum(tlog[i], lower)
end

-- Rule 10: what cap c counts at s over a key's grants log gl.
local function capCount(c, gl, s)
  if c.w <= 1000 then return logSum(gl, s - c.w) end
  if c.log then return logSum(c.log, s - c.w - grain(c.w) + 1) end
  return logSum(gl, s - 1000)
end

-- Rules 3-6 and 10 at time s.
local function decide(s)
  local d = {st = {}, take = {}, part = {}, hits = {}, cur = 0, hcut = false, gcut = false}
  for i = 1, nt do
    d.st[i] = stateOf(i, s)
    if d.st[i] == ACTIVE then d.cur = i end
  end
  local capped = maxv
  for _, c in ipairs(dcaps) do
    local room = math.max(c.n - capCount(c, glog, s), 0)
    if room < maxv then d.hcut = true end
    if room < capped then capped = room end
  end
  if hasG then
    for _, c in ipairs(gcaps) do
      local room = math.max(c.n - capCount(c, gglog, s), 0)
      if room < maxv then d.gcut = true end
      if room < capped then capped = room end
    end
  end
  local rem = capped
  local i = math.max(d.cur, 1)
  while i <= nt and rem > 0 do
    if d.st[i] == COOLDOWN then
      if not TS[i] then break end
    else
      d.part[i] = true
      d.hits[i] = window(i, s, d.st[i])
      local room = math.min(math.max(TL[i] - d.hits[i], 0), rem)
      d.take[i] = room
      rem = rem - room
    end
    i = i + 1
  end
  d.granted = capped - rem
  d.ok = (not closed) and d.granted > 0 and d.granted >= minv
  return d
end

-- X of reset_after: when the key stops mattering under this request's configuration.
local function expireAt()
  local x = 0
  if nt > 0 and tlog[1].l >= 0 then x = math.max(x, tlog[1].l + TW[1] + 1) end
  for i = 1, nt do
    if entered[i] then x = math.max(x, entry0[i] + TA[i] + TC[i] + 1) end
  end
  if glog.l >= 0 then x = math.max(x, glog.l + 1001) end
  for _, c in ipairs(dcaps) do
    -- The newest counted bucket's end + W + 1 (exact caps: within the second log's term).
    if c.w > 1000 then
      local g = grain(c.w)
      if c.log and c.log.l >= 0 then
        x = math.max(x, c.log.l + g + c.w)
      elseif not c.log and glog.l >= 0 and glog.l >= t - 1000 then
        x = math.max(x, math.floor(glog.l / g) * g + g + c.w)
      end
    end
  end
  return x
end

local function tierFields(st, hitsOf)
  if nt == 0 then return 0, 0, 0 end
  local cur = 0
  for i = 1, nt do
    if st[i] == ACTIVE then cur = i end
  end
  if cur == 0 then return 0, TL[1], hitsOf(1) end
  return cur, TL[cur], hitsOf(cur)
end

-- retry_after: tier states change only at e+A+1 and e+A+C+1; between two such times
-- the climb's path is fixed and every room only grows, so the decision is monotone
-- there: the first time it grants is found by a binary search in the first segment
-- whose end grants. After the horizon nothing changes any more.
local function retryAfter(need)
  if closed then return -1 end
  local fresh = maxv
  local sumL = 0
  for i = 1, nt do sumL = sumL + TL[i] end
  fresh = math.min(fresh, sumL)
  for _, c in ipairs(dcaps) do fresh = math.min(fresh, c.n) end
  if hasG then
    for _, c in ipairs(gcaps) do fresh = math.min(fresh, c.n) end
  end
  if fresh < need then return -1 end
  local pts = {}
  local horizon = t + 1
  for i = 1, nt do
    if entered[i] then
      local p1 = entry0[i] + TA[i] + 1
      local p2 = p1 + TC[i]
      if p1 > t + 1 then pts[#pts + 1] = p1 end
      if p2 > t + 1 and p2 ~= p1 then pts[#pts + 1] = p2 end
      horizon = math.max(horizon, p2)
    end
    if tlog[i].l >= 0 then horizon = math.max(horizon, tlog[i].l + TW[i] + 1) end
  end
  if glog.l >= 0 then horizon = math.max(horizon, glog.l + 1001) end
  if hasG and gglog.l >= 0 then horizon = math.max(horizon, gglog.l + 1001) end
  for _, c in ipairs(dcaps) do
    if c.log and c.log.l >= 0 then horizon = math.max(horizon, c.log.l + grain(c.w) + c.w) end
  end
  if hasG then
    for _, c in ipairs(gcaps) do
      if c.log and c.log.l >= 0 then horizon = math.max(horizon, c.log.l + grain(c.w) + c.w) end
    end
  end
  table.sort(pts)
  local lo = t + 1
  for k = 1, #pts + 1 do
    local hi
    if k <= #pts then hi = pts[k] - 1 else hi = math.max(horizon, lo) end
    if hi >= lo then
      if decide(hi).ok then
        local a0, b0 = lo, hi
        while a0 < b0 do
          local mid = math.floor((a0 + b0) / 2)
          if decide(mid).ok then b0 = mid else a0 = mid + 1 end
        end
        return a0 - t
      end
    end
    if k <= #pts then lo = pts[k] end
  end
  return -1
end

local d = decide(t)
local r = {0, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0}
if d.hcut then r[8] = 1 end
if d.gcut then r[9] = 1 end

if not d.ok then
  r[2], r[3], r[4] = tierFields(d.st, function(i) return window(i, t, d.st[i]) end)
  r[5] = logSum(glog, t - 1000)
  if hasG then r[6] = logSum(gglog, t - 1000) end
  r[10] = retryAfter(math.max(minv, 1))
  r[11] = math.max(expireAt() - t, 0)
  return r
end

-- Rule 7: record (in memory; written below unless DRYRUN).
local W = {sets = {}, dels = {}}
local granted = d.granted
r[1] = granted
local nowHits = {}
for i = 1, nt do
  if d.part[i] and d.st[i] == INACTIVE then
    if i > math.max(d.cur, 1) then r[7] = 1 end
    entered[i], entry0[i] = true, t
    d.st[i] = ACTIVE
  end
end
r[2], r[3], r[4] = tierFields(d.st, function(i)
  if d.part[i] then return d.hits[i] + d.take[i] end
  return window(i, t, d.st[i])
end)
r[5] = logSum(glog, t - 1000) + granted
if hasG then r[6] = logSum(gglog, t - 1000) + granted end

if dry then
  -- The state after the grant, without writing it: X with the new entries.
  if nt > 0 and (d.take[1] or 0) > 0 then tlog[1].l = t end
  glog.l = t
  for _, c in ipairs(dcaps) do
    if c.log then c.log.l = math.floor(t / grain(c.w)) * grain(c.w) end
  end
  r[11] = expireAt() - t
  return r
end

for i = 1, nt do
  local L = tlog[i]
  if i == 1 then
    logPop(W, L, t - TW[1])
  elseif d.st[i] == INACTIVE then
    logDrop(W, L)
  else
    logPop(W, L, math.max(t - TW[i], entry0[i]))
  end
  if (d.take[i] or 0) > 0 then logPush(W, L, t, d.take[i]) end
end
for i = nt + 1, snt do logDrop(W, tlog[i]) end
-- Long caps: the request's windows are kept (one log per distinct window; a new one
-- starts from the second log, popped to t - 1000 before), others dropped.
local function writeCaps(Wk, caps, stored, k, gl)
  local keep, list = {}, {}
  for _, c in ipairs(caps) do
    if c.w > 1000 and not keep[c.w] then
      keep[c.w] = true
      local g = grain(c.w)
      local L = c.log
      if L then
        logPop(Wk, L, t - c.w - g + 1)
      else
        L = newLog(k, 'c' .. string.format('%.0f', c.w) .. '.')
        local prev = gl.b
        for q = gl.h, gl.n - 1 do
          local ts, cum = entry(gl, q)
          logPush(Wk, L, math.floor(ts / g) * g, (cum - prev) % M)
          prev = cum
        end
        c.log = L
      end
      logPush(Wk, L, math.floor(t / g) * g, granted)
      L.w = c.w
      list[#list + 1] = L
    end
  end
  for w, L in pairs(stored) do
    if not keep[w] then logDrop(Wk, L) end
  end
  return list
end
logPop(W, glog, t - 1000)
local dlist = writeCaps(W, dcaps, scaps, key, glog)
logPush(W, glog, t, granted)

-- ONCE: remember this reply; forget what is older than 10 s.
if once or qh < qn then
  while qh < qn do
    local f = 'q.' .. string.format('%.0f', qh)
    local v = redis.call('HGET', key, f)
    local t0 = struct.unpack('<d', v)
    if t - t0 <= 10000 then break end
    W.dels[#W.dels + 1] = f
    local tok = string.sub(v, 9)
    local ov = redis.call('HGET', key, 'o:' .. tok)
    if ov and struct.unpack('<d', ov) == t0 then W.dels[#W.dels + 1] = 'o:' .. tok end
    qh = qh + 1
  end
end

r[11] = expireAt() - t
if once then
  local v = {struct.pack('<d', t)}
  for i = 1, 11 do v[#v + 1] = struct.pack('<d', r[i]) end
  W.sets[#W.sets + 1] = onceField
  W.sets[#W.sets + 1] = table.concat(v)
  W.sets[#W.sets + 1] = 'q.' .. string.format('%.0f', qn)
  W.sets[#W.sets + 1] = struct.pack('<d', t) .. once
  qn = qn + 1
  qt = t
end

local hdr = {'CRd1', struct.pack('<dd', t, nt)}
for i = 1, nt do
  local e = 0
  if entered[i] then e = 1 end
  hdr[#hdr + 1] = struct.pack('<dd', e, entry0[i])
  packLog(hdr, tlog[i])
end
packLog(hdr, glog)
hdr[#hdr + 1] = struct.pack('<d', #dlist)
for _, L in ipairs(dlist) do
  hdr[#hdr + 1] = struct.pack('<d', L.w)
  packLog(hdr, L)
end
hdr[#hdr + 1] = struct.pack('<ddd', qh, qn, qt)
W.sets[#W.sets + 1] = '@'
W.sets[#W.sets + 1] = table.concat(hdr)
flush(key, W)
-- The key lives while it matters (X), and while its newest ONCE token is remembered,
-- so that a replay within 10 s always finds it.
redis.call('PEXPIRE', key, math.max(r[11], qt + 10001 - t))

if hasG then
  local GW = {sets = {}, dels = {}}
  logPop(GW, gglog, t - 1000)
  local glist = writeCaps(GW, gcaps, gscaps, gkey, gglog)
  logPush(GW, gglog, t, granted)
  local gx = gglog.l + 1001
  local gh2 = {'CRg1', struct.pack('<d', t)}
  packLog(gh2, gglog)
  gh2[#gh2 + 1] = struct.pack('<d', #glist)
  for _, L in ipairs(glist) do
    gh2[#gh2 + 1] = struct.pack('<d', L.w)
    packLog(gh2, L)
    gx = math.max(gx, L.l + grain(L.w) + L.w)
  end
  GW.sets[#GW.sets + 1] = '@'
  GW.sets[#GW.sets + 1] = table.concat(gh2)
  flush(gkey, GW)
  redis.call('PEXPIRE', gkey, gx - t)
end
return r
