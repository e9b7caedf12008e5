-- CHARON.RATE as a server-side script: Charon's script engine, for servers that cannot
-- load the module. Same rules, same reply (the 11 integers of the module's RESP2 reply,
-- in its order). Built and sent by the Go runner (module/internal/script); not a public
-- interface: the runner validates the request.
--
-- KEYS[1] = the domain key; KEYS[2] = the GLOBAL key (with GLOBAL).
-- ARGV[1] = the request as little-endian doubles: now (AT, ms), max, min, flags
--           (1 DRYRUN, 2 CLOSED), nt, nt x (limit window active cooldown skippable),
--           nc, nc x (n window) per-domain caps (HARD n is n/1000),
--           ngc, ngc x (n window) GLOBAL caps (ngc = -1 without GLOBAL)
-- ARGV[2] = the ONCE token ('' or absent: none)
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
--   header:  newest, nt, nc, once queue head, once queue next, newest token's t0
--            (-1: none), grants log, nt x (entered, entry, tier log), nc x (window,
--            cap log); a global key has nt = 0 and no once queue
--   log (6 doubles): head seq, next seq, cum before head, first ts, last ts (-1: no
--            entry ever), cum at back
-- ONCE: "o:<token>" = t0 + the reply (11 doubles); queue "q.<seq>" = t0 + token.
--
-- Written for the interpreter's costs, measured with valgrind: Lua strings, tables and
-- closures cost more than the arithmetic, so the request is one packed argument, the
-- header one flat array (a log is an offset into it), and every function is defined
-- before the request's locals (a closure captures few upvalues) and takes the
-- request's state Z as its argument.

local sunpack, spack, srep = struct.unpack, struct.pack, string.rep
local floor, ceil, mmax, mmin = math.floor, math.ceil, math.max, math.min
local rcall = redis.call
local M = 4503599627370496 -- cumulative counts are kept mod 2^52 (exact in a double)
local INACTIVE, ACTIVE, COOLDOWN = 0, 1, 2
local GL = 7 -- the grants log's offset in a header
local TP = {'1.', '2.', '3.', '4.', '5.', '6.', '7.', '8.', '9.', '10.', '11.', '12.', '13.', '14.', '15.', '16.'}

local function typeError(key, ty)
  if ty == 'charon-rl' or ty == 'charon-hd' then
    return 'WRONGTYPE ' .. key .. ' was written by the Charon module engine (type ' .. ty ..
      '): the script engine does not read it; use the module while it lives, or delete it'
  end
  return 'WRONGTYPE Operation against a key holding the wrong kind of value'
end

-- readHeader returns the header of key decoded (nil when absent) or raises an error.
-- One HGET in the common case; TYPE only for an absent key or another type.
local function readHeader(key, magic, what)
  local h = redis.pcall('HGET', key, '@')
  if type(h) == 'table' or not h then
    local ty = rcall('TYPE', key).ok
    if ty == 'none' then return nil end
    return error({err = typeError(key, ty)})
  end
  local m = string.sub(h, 1, 4)
  if m ~= magic then
    if m == 'CRg1' then return error({err = 'WRONGTYPE ' .. key .. ' holds a global rate log, not ' .. what}) end
    if m == 'CRd1' then return error({err = 'WRONGTYPE ' .. key .. ' holds a domain rate log, not ' .. what}) end
    if m == 'CRh1' then return error({err = 'WRONGTYPE ' .. key .. ' holds holds (CHARON.RESERVE), not ' .. what}) end
    return error({err = 'ERR ' .. key .. ': unknown Charon script-engine format ' .. string.format('%q', m)})
  end
  return {sunpack('<' .. srep('d', (#h - 4) / 8), h, 5)}
end

-- Logs. A log is at offset o of a header array A: A[o] head seq, A[o+1] next seq,
-- A[o+2] cum before head, A[o+3] first ts, A[o+4] last ts, A[o+5] cum at back. Its
-- entries are the fields p .. seq of key. An unheld cap's log has A[o] = -1.
-- Z.caches holds the entries read this call, by key and field; Z.sets and Z.dels the
-- pending writes of the key being written.

local function entry(Z, key, p, seq)
  local f = p .. seq
  local cache = Z.caches[key]
  local v = cache and cache[f]
  if not v then
    v = rcall('HGET', key, f)
    if not v then return error({err = 'ERR corrupt Charon script-engine value in ' .. key .. ': entry ' .. f .. ' missing'}) end
    if not cache then
      cache = {}
      Z.caches[key] = cache
    end
    cache[f] = v
  end
  local ts, cum = sunpack('<dd', v)
  return ts, cum
end

-- firstAt: the first seq whose ts >= lower, given head ts < lower <= last ts.
local function firstAt(Z, key, p, A, o, lower)
  local lo, hi = A[o], A[o + 1] - 1
  local step = 1
  while lo + step < hi do
    local probe = lo + step
    if entry(Z, key, p, probe) >= lower then hi = probe; break end
    lo = probe
    step = step * 2
  end
  while hi - lo > 1 do
    local mid = floor((lo + hi) / 2)
    if entry(Z, key, p, mid) >= lower then hi = mid else lo = mid end
  end
  return hi
end

-- logSum: the sum of the log's counts with ts >= lower.
local function logSum(Z, key, p, A, o, lower)
  if A[o] == A[o + 1] or A[o + 4] < lower then return 0 end
  if A[o + 3] >= lower then return (A[o + 5] - A[o + 2]) % M end
  local _, cum = entry(Z, key, p, firstAt(Z, key, p, A, o, lower) - 1)
  return (A[o + 5] - cum) % M
end

local function delRange(Z, p, from, to)
  local dels = Z.dels
  local k = #dels
  for q = from, to do
    k = k + 1
    dels[k] = p .. q
  end
end

-- logPop drops the entries with ts < lower.
local function logPop(Z, key, p, A, o, lower)
  local h, n = A[o], A[o + 1]
  if h == n or A[o + 3] >= lower then return end
  if A[o + 4] < lower then
    delRange(Z, p, h, n - 1)
    A[o], A[o + 2] = n, A[o + 5]
    return
  end
  local j = firstAt(Z, key, p, A, o, lower)
  local ts = entry(Z, key, p, j)
  local _, cum = entry(Z, key, p, j - 1)
  delRange(Z, p, h, j - 1)
  A[o], A[o + 2], A[o + 3] = j, cum, ts
end

local function logDrop(Z, p, A, o)
  delRange(Z, p, A[o], A[o + 1] - 1)
  A[o], A[o + 2] = A[o + 1], A[o + 5]
end

-- logPush adds n at ts (merged into the back entry when it is at ts).
local function logPush(Z, key, p, A, o, ts, n)
  local c = (A[o + 5] + n) % M
  local seq = A[o + 1]
  if A[o] ~= seq and A[o + 4] == ts then
    seq = seq - 1
  else
    if A[o] == seq then A[o + 3] = ts end
    A[o + 1] = seq + 1
  end
  A[o + 4], A[o + 5] = ts, c
  local v = spack('<dd', ts, c)
  local sets = Z.sets
  local k = #sets
  sets[k + 1], sets[k + 2] = p .. seq, v
  local cache = Z.caches[key]
  if cache then cache[p .. seq] = v end
end

-- flush writes a key: deletes, then sets (a ONCE token remembered again replaces its
-- old self), then the header.
local function flush(Z, key, magic, A)
  local dels, sets = Z.dels, Z.sets
  for i = 1, #dels, 1000 do rcall('HDEL', key, unpack(dels, i, mmin(i + 999, #dels))) end
  local k = #sets
  sets[k + 1], sets[k + 2] = '@', magic .. spack('<' .. srep('d', #A), unpack(A))
  for i = 1, #sets, 1000 do rcall('HSET', key, unpack(sets, i, mmin(i + 999, #sets))) end
  Z.sets, Z.dels = {}, {}
end

local function grain(w)
  if w <= 1000 then return 1 end
  return ceil(w / 1000)
end

-- layout builds a header for the request from a stored one S (or none): the grants
-- log, tiers 1..ntiers (kept or empty), then one log per distinct long cap window
-- among the caps q[from], q[from+2], ... q[to] (their windows follow each n; kept
-- when stored, else unheld). offs maps window -> offset; returns the header and the
-- stored caps it leaves out (window -> offset in S).
local function layout(S, ntiers, q, from, to, offs)
  if S and S[2] == ntiers and S[3] == 0 then
    local long = false
    for j = from, to, 2 do
      if q[j + 1] > 1000 then long = true end
    end
    if not long then
      S[#S] = nil -- struct.unpack's next position
      return S, {}
    end
  end
  local A = {-1, ntiers, 0, 0, 0, -1, 0, 0, 0, -1, -1, 0}
  local snt = 0
  if S then
    for i = 1, 12 do A[i] = S[i] end
    A[2] = ntiers
    snt = S[2]
  end
  local k = 12
  for i = 1, ntiers do
    if i <= snt then
      local so = 13 + 8 * (i - 1)
      for x = 0, 7 do A[k + 1 + x] = S[so + x] end
    else
      A[k + 1], A[k + 2], A[k + 3], A[k + 4], A[k + 5], A[k + 6], A[k + 7], A[k + 8] = 0, 0, 0, 0, 0, -1, -1, 0
    end
    k = k + 8
  end
  local stored = {}
  if S then
    local so = 13 + 8 * snt
    for _ = 1, S[3] do
      stored[S[so]] = so
      so = so + 7
    end
  end
  local nc = 0
  for j = from, to, 2 do
    local w = q[j + 1]
    if w > 1000 and not offs[w] then
      nc = nc + 1
      A[k + 1] = w
      local so = stored[w]
      if so then
        for x = 1, 6 do A[k + 1 + x] = S[so + x] end
        stored[w] = nil
      else
        A[k + 2], A[k + 3], A[k + 4], A[k + 5], A[k + 6], A[k + 7] = -1, 0, 0, -1, -1, 0
      end
      offs[w] = k + 2
      k = k + 7
    end
  end
  A[3] = nc
  return A, stored
end

-- Tier i's header offset, and its configuration's index in q (limit, window, active,
-- cooldown, skippable follow).
local function tierOff(i) return 13 + 8 * (i - 1) end
local function tierCfg(i) return 1 + 5 * i end

local function stateOf(Z, i, s)
  local D, q = Z.D, Z.q
  local o = tierOff(i)
  if D[o] ~= 1 then return INACTIVE end
  local e, act = D[o + 1], q[tierCfg(i) + 2]
  if e <= s and s <= e + act then return ACTIVE end
  if e + act < s and s <= e + act + q[tierCfg(i) + 3] then return COOLDOWN end
  return INACTIVE
end

-- Rule 2: hits in tier i's window at s, in state st.
local function window(Z, i, s, st)
  if i > 1 and st == INACTIVE then return 0 end
  local D = Z.D
  local o = tierOff(i)
  local lower = s - Z.q[tierCfg(i) + 1]
  if i > 1 and D[o + 1] > lower then lower = D[o + 1] end
  return logSum(Z, Z.key, TP[i], D, o + 2, lower)
end

-- Rule 10: what the cap whose n is q[j] counts at s on key k (header A, offsets offs).
local function capCount(Z, k, A, offs, j, s)
  local w = Z.q[j + 1]
  if w <= 1000 then return logSum(Z, k, 'g.', A, GL, s - w) end
  local o = offs[w]
  if A[o] >= 0 then return logSum(Z, k, 'c' .. w .. '.', A, o, s - w - grain(w) + 1) end
  return logSum(Z, k, 'g.', A, GL, s - 1000) -- not held: what the key holds, its second log
end

-- Rules 3-6 and 10 at time s. Fills Z.st, Z.take (0: not part of the climb, else the
-- hits taken + 1) and Z.hits; returns ok, granted, the current tier, hard and global cuts.
local function decide(Z, s)
  local q, st, take, hits = Z.q, Z.st, Z.take, Z.hits
  local nt, maxv = Z.nt, Z.max
  local cur = 0
  for i = 1, nt do
    st[i] = stateOf(Z, i, s)
    take[i] = 0
    if st[i] == ACTIVE then cur = i end
  end
  local capped, hcut, gcut = maxv, false, false
  for j = Z.dc, Z.dc + 2 * Z.ndc - 1, 2 do
    local room = mmax(q[j] - capCount(Z, Z.key, Z.D, Z.dcap, j, s), 0)
    if room < maxv then hcut = true end
    if room < capped then capped = room end
  end
  for j = Z.gc, Z.gc + 2 * Z.ngc - 1, 2 do
    local room = mmax(q[j] - capCount(Z, Z.gkey, Z.G, Z.gcap, j, s), 0)
    if room < maxv then gcut = true end
    if room < capped then capped = room end
  end
  local rem = capped
  local i = mmax(cur, 1)
  while i <= nt and rem > 0 do
    local cfg = tierCfg(i)
    if st[i] == COOLDOWN then
      if q[cfg + 4] ~= 1 then break end
    else
      hits[i] = window(Z, i, s, st[i])
      local room = mmin(mmax(q[cfg] - hits[i], 0), rem)
      take[i] = room + 1
      rem = rem - room
    end
    i = i + 1
  end
  local granted = capped - rem
  return (not Z.closed) and granted > 0 and granted >= Z.min, granted, cur, hcut, gcut
end

-- X of reset_after: when the key stops mattering under this request's configuration.
local function expireAt(Z)
  local D, q, t = Z.D, Z.q, Z.t
  local x = 0
  if Z.nt > 0 and D[19] >= 0 then x = D[19] + q[tierCfg(1) + 1] + 1 end -- tier 1's last hit
  for i = 1, Z.nt do
    local o = tierOff(i)
    if D[o] == 1 then x = mmax(x, D[o + 1] + q[tierCfg(i) + 2] + q[tierCfg(i) + 3] + 1) end
  end
  local gl = D[GL + 4]
  if gl >= 0 then x = mmax(x, gl + 1001) end
  for w, o in pairs(Z.dcap) do
    -- The newest counted bucket's end + W + 1 (exact caps: within the second log's term).
    local g = grain(w)
    if D[o] >= 0 and D[o + 4] >= 0 then
      x = mmax(x, D[o + 4] + g + w)
    elseif D[o] < 0 and gl >= 0 and gl >= t - 1000 then
      x = mmax(x, floor(gl / g) * g + g + w)
    end
  end
  return x
end

-- tier, tier_limit, tier_hits for the states in Z.st; tier i's hits are Z.hits[i] +
-- Z.take[i] - 1 after a grant it took part in, else its window.
local function tierFields(Z, granted)
  local nt, st = Z.nt, Z.st
  if nt == 0 then return 0, 0, 0 end
  local cur = 0
  for i = 1, nt do
    if st[i] == ACTIVE then cur = i end
  end
  local i = mmax(cur, 1)
  local h
  if granted and Z.take[i] > 0 then
    h = Z.hits[i] + Z.take[i] - 1
  else
    h = window(Z, i, Z.t, st[i])
  end
  return cur, Z.q[tierCfg(i)], h
end

-- retry_after: tier states change only at e+A+1 and e+A+C+1; between two such times
-- the climb's path is fixed and every room only grows, so the decision is monotone
-- there: the first time it grants is found by a binary search in the first segment
-- whose end grants. After the horizon nothing changes any more.
local function retryAfter(Z, need)
  if Z.closed then return -1 end
  local D, G, q, t = Z.D, Z.G, Z.q, Z.t
  local fresh = Z.max
  local sumL = 0
  for i = 1, Z.nt do sumL = sumL + q[tierCfg(i)] end
  fresh = mmin(fresh, sumL)
  for j = Z.dc, Z.dc + 2 * Z.ndc - 1, 2 do fresh = mmin(fresh, q[j]) end
  for j = Z.gc, Z.gc + 2 * Z.ngc - 1, 2 do fresh = mmin(fresh, q[j]) end
  if fresh < need then return -1 end
  local pts = {}
  local horizon = t + 1
  for i = 1, Z.nt do
    local o, cfg = tierOff(i), tierCfg(i)
    if D[o] == 1 then
      local p1 = D[o + 1] + q[cfg + 2] + 1
      local p2 = p1 + q[cfg + 3]
      if p1 > t + 1 then pts[#pts + 1] = p1 end
      if p2 > t + 1 and p2 ~= p1 then pts[#pts + 1] = p2 end
      horizon = mmax(horizon, p2)
    end
    if D[o + 6] >= 0 then horizon = mmax(horizon, D[o + 6] + q[cfg + 1] + 1) end
  end
  if D[GL + 4] >= 0 then horizon = mmax(horizon, D[GL + 4] + 1001) end
  if G and G[GL + 4] >= 0 then horizon = mmax(horizon, G[GL + 4] + 1001) end
  for w, o in pairs(Z.dcap) do
    if D[o + 4] >= 0 then horizon = mmax(horizon, D[o + 4] + grain(w) + w) end
  end
  if G then
    for w, o in pairs(Z.gcap) do
      if G[o + 4] >= 0 then horizon = mmax(horizon, G[o + 4] + grain(w) + w) end
    end
  end
  table.sort(pts)
  local lo = t + 1
  for k = 1, #pts + 1 do
    local hi
    if k <= #pts then hi = pts[k] - 1 else hi = mmax(horizon, lo) end
    if hi >= lo and decide(Z, hi) then
      local a0, b0 = lo, hi
      while a0 < b0 do
        local mid = floor((a0 + b0) / 2)
        if decide(Z, mid) then b0 = mid else a0 = mid + 1 end
      end
      return a0 - t
    end
    if k <= #pts then lo = pts[k] end
  end
  return -1
end

-- Long caps on a grant: the request's windows are kept; a new one starts from the
-- second log (popped to t - 1000 first); the stored ones it leaves out are dropped.
local function writeCaps(Z, k, A, offs, drop, S, granted)
  local t = Z.t
  for w, o in pairs(offs) do
    local g = grain(w)
    local p = 'c' .. w .. '.'
    if A[o] >= 0 then
      logPop(Z, k, p, A, o, t - w - g + 1)
    else
      A[o], A[o + 1], A[o + 2], A[o + 3], A[o + 4], A[o + 5] = 0, 0, 0, -1, -1, 0
      local prev = A[GL + 2]
      for x = A[GL], A[GL + 1] - 1 do
        local ts, cum = entry(Z, k, 'g.', x)
        logPush(Z, k, p, A, o, floor(ts / g) * g, (cum - prev) % M)
        prev = cum
      end
    end
    logPush(Z, k, p, A, o, floor(t / g) * g, granted)
  end
  for w, so in pairs(drop) do logDrop(Z, 'c' .. w .. '.', S, so + 1) end
end

-------------------------------------------------------------------------------
-- The request.
local q = {sunpack('<' .. srep('d', #ARGV[1] / 8), ARGV[1])}
local nt = q[5]
local dc = 7 + 5 * nt -- the first domain cap's n
local ndc = q[dc - 1]
local gc = dc + 2 * ndc + 1
local ngc = q[gc - 1]
local once = ARGV[2]
if once == '' then once = nil end
local Z = {q = q, nt = nt, max = q[2], min = q[3], closed = q[4] >= 2, dc = dc, ndc = ndc, gc = gc, ngc = mmax(ngc, 0),
  key = KEYS[1], gkey = KEYS[2], st = {}, take = {}, hits = {}, caches = {}, sets = {}, dels = {}, dcap = {}}
local key = KEYS[1]

-- Stored state, laid out for this request: D the domain header with the request's
-- tiers and distinct long caps, S the stored one (for what the request drops).
local S = readHeader(key, 'CRd1', 'a domain rate log')
local D, dropped = layout(S, nt, q, dc, dc + 2 * ndc - 1, Z.dcap)
Z.D = D
local GS, gdropped
if ngc >= 0 then
  GS = readHeader(Z.gkey, 'CRg1', 'a global rate log')
  Z.gcap = {}
  Z.G, gdropped = layout(GS, 0, q, gc, gc + 2 * ngc - 1, Z.gcap)
end
local G = Z.G

-- Rule 8.
local t = q[1]
if D[1] > t then t = D[1] end
if G and G[1] > t then t = G[1] end
Z.t = t

-- Rule 11: a remembered token is a replay.
if once and S then
  local v = rcall('HGET', key, 'o:' .. once)
  if v and t - sunpack('<d', v) <= 10000 then
    local rr = {sunpack('<ddddddddddd', v, 9)}
    rr[12] = nil -- struct.unpack's next position
    return rr
  end
end

local ok, granted, cur, hcut, gcut = decide(Z, t)
local r = {0, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0}
if hcut then r[8] = 1 end
if gcut then r[9] = 1 end

if not ok then
  r[2], r[3], r[4] = tierFields(Z, false)
  r[5] = logSum(Z, key, 'g.', D, GL, t - 1000)
  if G then r[6] = logSum(Z, Z.gkey, 'g.', G, GL, t - 1000) end
  r[10] = retryAfter(Z, mmax(Z.min, 1))
  r[11] = mmax(expireAt(Z) - t, 0)
  return r
end

-- Rule 7: record (in D and G; written below unless DRYRUN).
local st, take = Z.st, Z.take
r[1] = granted
for i = 1, nt do
  if take[i] > 0 and st[i] == INACTIVE then
    if i > mmax(cur, 1) then r[7] = 1 end
    local o = tierOff(i)
    D[o], D[o + 1] = 1, t
    st[i] = ACTIVE
  end
end
r[2], r[3], r[4] = tierFields(Z, true)
r[5] = logSum(Z, key, 'g.', D, GL, t - 1000) + granted
if G then r[6] = logSum(Z, Z.gkey, 'g.', G, GL, t - 1000) + granted end

if q[4] % 2 == 1 then -- DRYRUN: X after the grant, without writing it
  if nt > 0 and take[1] > 1 then D[19] = t end
  D[GL + 4] = t
  for w, o in pairs(Z.dcap) do
    if D[o] >= 0 then D[o + 4] = floor(t / grain(w)) * grain(w) end
  end
  r[11] = expireAt(Z) - t
  return r
end

for i = 1, nt do
  local o = tierOff(i) + 2
  local p = TP[i]
  if i == 1 then
    logPop(Z, key, p, D, o, t - q[tierCfg(1) + 1])
  elseif st[i] == INACTIVE then
    logDrop(Z, p, D, o)
  else
    logPop(Z, key, p, D, o, mmax(t - q[tierCfg(i) + 1], D[o - 1]))
  end
  if take[i] > 1 then logPush(Z, key, p, D, o, t, take[i] - 1) end
end
if S then
  for i = nt + 1, S[2] do logDrop(Z, TP[i], S, tierOff(i) + 2) end
end
logPop(Z, key, 'g.', D, GL, t - 1000)
writeCaps(Z, key, D, Z.dcap, dropped, S, granted)
logPush(Z, key, 'g.', D, GL, t, granted)

-- ONCE: forget what is older than 10 s, remember this reply.
local qh, qn, qt = D[4], D[5], D[6]
while qh < qn do
  local f = 'q.' .. qh
  local v = rcall('HGET', key, f)
  local t0 = sunpack('<d', v)
  if t - t0 <= 10000 then break end
  local dels = Z.dels
  dels[#dels + 1] = f
  local tok = string.sub(v, 9)
  local ov = rcall('HGET', key, 'o:' .. tok)
  if ov and sunpack('<d', ov) == t0 then dels[#dels + 1] = 'o:' .. tok end
  qh = qh + 1
end

r[11] = expireAt(Z) - t
if once then
  local sets = Z.sets
  local k = #sets
  sets[k + 1] = 'o:' .. once
  sets[k + 2] = spack('<dddddddddddd', t, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11])
  sets[k + 3] = 'q.' .. qn
  sets[k + 4] = spack('<d', t) .. once
  qn = qn + 1
  qt = t
end
D[1], D[4], D[5], D[6] = t, qh, qn, qt
flush(Z, key, 'CRd1', D)
-- The key lives while it matters (X), and while its newest ONCE token is remembered,
-- so that a replay within 10 s always finds it.
rcall('PEXPIRE', key, mmax(r[11], qt + 10001 - t))

if G then
  local gkey = Z.gkey
  logPop(Z, gkey, 'g.', G, GL, t - 1000)
  writeCaps(Z, gkey, G, Z.gcap, gdropped, GS, granted)
  logPush(Z, gkey, 'g.', G, GL, t, granted)
  local gx = G[GL + 4] + 1001
  for w, o in pairs(Z.gcap) do gx = mmax(gx, G[o + 4] + grain(w) + w) end
  G[1] = t
  flush(Z, gkey, 'CRg1', G)
  rcall('PEXPIRE', gkey, gx - t)
end
return r
