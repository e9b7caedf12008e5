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
-- Written for the interpreter's costs, measured with valgrind: every closure and table
-- a call creates costs more than the arithmetic around it, so the request is one
-- packed argument, the header one flat array (a log is an offset into it), the log
-- operations one function, and the functions only rejections need are made only then.

local sunpack, spack, srep = struct.unpack, struct.pack, string.rep
local floor, mmax, mmin = math.floor, math.max, math.min
local rcall = redis.call
local M = 4503599627370496 -- cumulative counts are kept mod 2^52 (exact in a double)
local GL = 7 -- the grants log's offset in a header
local TP = {'1.', '2.', '3.', '4.', '5.', '6.', '7.', '8.', '9.', '10.', '11.', '12.', '13.', '14.', '15.', '16.'}

-- The request's state, set below.
local q = {sunpack('<' .. srep('d', #ARGV[1] / 8), ARGV[1])}
local nt = q[5]
local dc = 7 + 5 * nt -- q[dc], q[dc+1]: the first per-domain cap's n and window
local ndc = q[dc - 1]
local gc = dc + 2 * ndc + 1 -- likewise for the GLOBAL caps
local hasG = q[gc - 1] >= 0
local ngc = mmax(q[gc - 1], 0)
local maxv, minv, closed = q[2], q[3], q[4] >= 2
local key, gkey = KEYS[1], KEYS[2]
local once = ARGV[2]
if once == '' then once = nil end
local D, G, dcap, gcap, t -- the headers (arrays), long caps' offsets by window, the time
local X = {} -- per tier i: X[3i-2] state, X[3i-1] hits taken + 1 (0: not climbed), X[3i] hits
local caches -- entry values read this call, by key, then field
local sets, dels = {}, {} -- pending writes of the key being written

-- at returns the ts and cum of the entry p .. seq of key k (cached for this call).
local function at(k, p, seq)
  local f = p .. seq
  caches = caches or {}
  local cache = caches[k]
  if not cache then
    cache = {}
    caches[k] = cache
  end
  local v = cache[f]
  if not v then
    v = rcall('HGET', k, f)
    if not v then return error({err = 'ERR corrupt Charon script-engine value in ' .. k .. ': entry ' .. f .. ' missing'}) end
    cache[f] = v
  end
  return sunpack('<dd', v)
end

-- LOG performs op on the log at offset o of header A, whose entries are the fields
-- p .. seq of key k: A[o] head seq, A[o+1] next seq, A[o+2] cum before head, A[o+3]
-- first ts, A[o+4] last ts, A[o+5] cum at back (an unheld cap's log has A[o] = -1).
--   'sum'  x=lower: the counts with ts >= lower
--   'pop'  x=lower: drop the entries with ts < lower
--   'push' x=ts, y=n: add n at ts (merged into the back entry when it is at ts)
--   'drop': drop every entry
local function LOG(op, k, p, A, o, x, y)
  local h, n = A[o], A[o + 1]
  if op == 'push' then
    local c = (A[o + 5] + y) % M
    local seq = n
    if h ~= n and A[o + 4] == x then
      seq = n - 1
    else
      if h == n then A[o + 3] = x end
      A[o + 1] = n + 1
    end
    A[o + 4], A[o + 5] = x, c
    local v = spack('<dd', x, c)
    local f = p .. seq
    local j = #sets
    sets[j + 1], sets[j + 2] = f, v
    local cache = caches and caches[k]
    if cache then cache[f] = v end
    return
  end
  if h == n then return 0 end -- empty
  local drop = op == 'drop'
  if not drop and A[o + 3] >= x then -- every entry counts
    if op == 'sum' then return (A[o + 5] - A[o + 2]) % M end
    return
  end
  if not drop and A[o + 4] < x then -- no entry counts
    if op == 'sum' then return 0 end
    drop = true
  end
  if drop then
    local j = #dels
    for sq = h, n - 1 do
      j = j + 1
      dels[j] = p .. sq
    end
    A[o], A[o + 2] = n, A[o + 5]
    return
  end
  -- The first seq whose ts >= x: from the head, galloping, then a binary search.
  local lo, hi = h, n - 1
  local step = 1
  while lo + step < hi do
    local probe = lo + step
    if at(k, p, probe) >= x then hi = probe; break end
    lo = probe
    step = step * 2
  end
  while hi - lo > 1 do
    local mid = floor((lo + hi) / 2)
    if at(k, p, mid) >= x then hi = mid else lo = mid end
  end
  local _, cum = at(k, p, hi - 1)
  if op == 'sum' then return (A[o + 5] - cum) % M end
  local j = #dels
  for sq = h, hi - 1 do
    j = j + 1
    dels[j] = p .. sq
  end
  A[o], A[o + 2], A[o + 3] = hi, cum, (at(k, p, hi))
end

-- readHeader returns the header of key k decoded (nil when absent) or raises an error.
-- One HGET in the common case; TYPE only for an absent key or another type.
local function readHeader(k, magic, what)
  local h = redis.pcall('HGET', k, '@')
  if type(h) == 'table' or not h then
    local ty = rcall('TYPE', k).ok
    if ty == 'none' then return nil end
    if ty == 'charon-rl' or ty == 'charon-hd' then
      return error({err = 'WRONGTYPE ' .. k .. ' was written by the Charon module engine (type ' .. ty ..
        '): the script engine does not read it; use the module while it lives, or delete it'})
    end
    return error({err = 'WRONGTYPE Operation against a key holding the wrong kind of value'})
  end
  local m = string.sub(h, 1, 4)
  if m ~= magic then
    if m == 'CRg1' then return error({err = 'WRONGTYPE ' .. k .. ' holds a global rate log, not ' .. what}) end
    if m == 'CRd1' then return error({err = 'WRONGTYPE ' .. k .. ' holds a domain rate log, not ' .. what}) end
    if m == 'CRh1' then return error({err = 'WRONGTYPE ' .. k .. ' holds holds (CHARON.RESERVE), not ' .. what}) end
    return error({err = 'ERR ' .. k .. ': unknown Charon script-engine format ' .. string.format('%q', m)})
  end
  local S = {sunpack('<' .. srep('d', (#h - 4) / 8), h, 5)}
  S[#S] = nil -- struct.unpack's next position
  return S
end

-- layout builds a header for the request from a stored one S (or none): the grants
-- log, tiers 1..ntiers (kept or empty), then one log per distinct long cap window
-- among the caps q[from], q[from+2], ... q[to] (their windows follow each n; kept
-- when stored, else unheld). offs maps window -> offset; returns the header and the
-- stored caps it leaves out (window -> offset in S), or nil for none.
local function layout(S, ntiers, from, to, offs)
  local long = false
  for j = from, to, 2 do
    if q[j + 1] > 1000 then long = true end
  end
  if S and S[2] == ntiers and S[3] == 0 and not long then return S end
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
  local stored
  if S and S[3] > 0 then
    stored = {}
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
      local so = stored and stored[w]
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

-- decide applies rules 3-6 and 10 at time s: fills X; returns ok, granted, the
-- current tier, and whether a per-domain or a global cap cut MAX.
-- Tier i: header offset 5 + 8i (entered, entry, then its log), config q[1 + 5i]
-- (limit, window, active, cooldown, skippable).
local function decide(s)
  local cur = 0
  for i = 1, nt do
    local o, c = 5 + 8 * i, 1 + 5 * i
    local state = 0 -- INACTIVE
    if D[o] == 1 then
      local e, act = D[o + 1], q[c + 2]
      if e <= s and s <= e + act then
        state = 1 -- ACTIVE
        cur = i
      elseif e + act < s and s <= e + act + q[c + 3] then
        state = 2 -- COOLDOWN
      end
    end
    X[3 * i - 2], X[3 * i - 1] = state, 0
  end
  local capped, hcut, gcut = maxv, false, false
  for m = 1, ndc + ngc do
    local j = dc + 2 * (m - 1) -- the cap's n is q[j], its window q[j + 1]
    if m > ndc then j = gc + 2 * (m - ndc - 1) end
    do
      local A, k, offs = D, key, dcap
      if m > ndc then A, k, offs = G, gkey, gcap end
      local w = q[j + 1]
      local cnt
      if w <= 1000 then
        cnt = LOG('sum', k, 'g.', A, GL, s - w)
      elseif A[offs[w]] >= 0 then
        cnt = LOG('sum', k, 'c' .. w .. '.', A, offs[w], s - w - math.ceil(w / 1000) + 1)
      else
        cnt = LOG('sum', k, 'g.', A, GL, s - 1000) -- not held: what the key holds, its second log
      end
      local room = mmax(q[j] - cnt, 0)
      if room < maxv then
        if m > ndc then gcut = true else hcut = true end
      end
      if room < capped then capped = room end
    end
  end
  local rem = capped
  local i = mmax(cur, 1)
  while i <= nt and rem > 0 do
    local c = 1 + 5 * i
    if X[3 * i - 2] == 2 then
      if q[c + 4] ~= 1 then break end
    else
      local hits = 0
      if i == 1 or X[3 * i - 2] ~= 0 then -- rule 2: an INACTIVE higher tier is empty
        local o = 5 + 8 * i
        local lower = s - q[c + 1]
        if i > 1 and D[o + 1] > lower then lower = D[o + 1] end
        hits = LOG('sum', key, TP[i], D, o + 2, lower)
      end
      X[3 * i] = hits
      local room = mmin(mmax(q[c] - hits, 0), rem)
      X[3 * i - 1] = room + 1
      rem = rem - room
    end
    i = i + 1
  end
  local granted = capped - rem
  return (not closed) and granted > 0 and granted >= minv, granted, cur, hcut, gcut
end

-- X of reset_after: when the key stops mattering under this request's configuration.
local function expireAt()
  local x = 0
  if nt > 0 and D[19] >= 0 then x = D[19] + q[7] + 1 end -- tier 1's last hit
  for i = 1, nt do
    local o = 5 + 8 * i
    if D[o] == 1 then x = mmax(x, D[o + 1] + q[3 + 5 * i] + q[4 + 5 * i] + 1) end
  end
  local gl = D[GL + 4]
  if gl >= 0 then x = mmax(x, gl + 1001) end
  for w, o in pairs(dcap) do
    -- The newest counted bucket's end + W + 1 (exact caps: within the second log's term).
    local g = math.ceil(w / 1000)
    if D[o] >= 0 and D[o + 4] >= 0 then
      x = mmax(x, D[o + 4] + g + w)
    elseif D[o] < 0 and gl >= 0 and gl >= t - 1000 then
      x = mmax(x, floor(gl / g) * g + g + w)
    end
  end
  return x
end

-------------------------------------------------------------------------------
-- Stored state, laid out for this request: D the domain header with the request's
-- tiers and distinct long caps, S the stored one (for what the request drops).
dcap = {}
local S = readHeader(key, 'CRd1', 'a domain rate log')
local dropped, GS, gdropped
D, dropped = layout(S, nt, dc, dc + 2 * ndc - 1, dcap)
if hasG then
  GS = readHeader(gkey, 'CRg1', 'a global rate log')
  gcap = {}
  G, gdropped = layout(GS, 0, gc, gc + 2 * ngc - 1, gcap)
end

-- Rule 8.
t = q[1]
if D[1] > t then t = D[1] end
if G and G[1] > t then t = G[1] end

-- Rule 11: a remembered token is a replay.
if once and S then
  local v = rcall('HGET', key, 'o:' .. once)
  if v and t - sunpack('<d', v) <= 10000 then
    local rr = {sunpack('<ddddddddddd', v, 9)}
    rr[12] = nil -- struct.unpack's next position
    return rr
  end
end

local ok, granted, cur, hcut, gcut = decide(t)
local r = {0, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0}
if hcut then r[8] = 1 end
if gcut then r[9] = 1 end

-- tier, tier_limit, tier_hits: the highest ACTIVE tier (tier 1's limit and hits when
-- none is); its hits are what the climb counted plus what it took, else its window.
local function tierFields()
  if nt == 0 then return 0, 0, 0 end
  local c = 0
  for i = 1, nt do
    if X[3 * i - 2] == 1 then c = i end
  end
  local i = mmax(c, 1)
  if X[3 * i - 1] > 0 then return c, q[1 + 5 * i], X[3 * i] + X[3 * i - 1] - 1 end
  if i > 1 and X[3 * i - 2] == 0 then return c, q[1 + 5 * i], 0 end
  local o = 5 + 8 * i
  local lower = t - q[2 + 5 * i]
  if i > 1 and D[o + 1] > lower then lower = D[o + 1] end
  return c, q[1 + 5 * i], LOG('sum', key, TP[i], D, o + 2, lower)
end

if not ok then
  for i = 1, nt do X[3 * i - 1] = 0 end -- nothing was taken: each tier shows its window
  r[2], r[3], r[4] = tierFields()
  r[5] = LOG('sum', key, 'g.', D, GL, t - 1000)
  if G then r[6] = LOG('sum', gkey, 'g.', G, GL, t - 1000) end
  r[11] = mmax(expireAt() - t, 0)
  -- retry_after: tier states change only at e+A+1 and e+A+C+1; between two such
  -- times the climb's path is fixed and every room only grows, so the decision is
  -- monotone there: the first time it grants is found by a binary search in the
  -- first segment whose end grants. After the horizon nothing changes any more.
  local need = mmax(minv, 1)
  local fresh = maxv
  local sumL = 0
  for i = 1, nt do sumL = sumL + q[1 + 5 * i] end
  fresh = mmin(fresh, sumL)
  for m = 1, ndc do fresh = mmin(fresh, q[dc + 2 * (m - 1)]) end
  for m = 1, ngc do fresh = mmin(fresh, q[gc + 2 * (m - 1)]) end
  if closed or fresh < need then
    r[10] = -1
    return r
  end
  local pts = {}
  local horizon = t + 1
  for i = 1, nt do
    local o, c = 5 + 8 * i, 1 + 5 * i
    if D[o] == 1 then
      local p1 = D[o + 1] + q[c + 2] + 1
      local p2 = p1 + q[c + 3]
      if p1 > t + 1 then pts[#pts + 1] = p1 end
      if p2 > t + 1 and p2 ~= p1 then pts[#pts + 1] = p2 end
      horizon = mmax(horizon, p2)
    end
    if D[o + 6] >= 0 then horizon = mmax(horizon, D[o + 6] + q[c + 1] + 1) end
  end
  if D[GL + 4] >= 0 then horizon = mmax(horizon, D[GL + 4] + 1001) end
  if G and G[GL + 4] >= 0 then horizon = mmax(horizon, G[GL + 4] + 1001) end
  for w, o in pairs(dcap) do
    if D[o + 4] >= 0 then horizon = mmax(horizon, D[o + 4] + math.ceil(w / 1000) + w) end
  end
  if G then
    for w, o in pairs(gcap) do
      if G[o + 4] >= 0 then horizon = mmax(horizon, G[o + 4] + math.ceil(w / 1000) + w) end
    end
  end
  table.sort(pts)
  local lo = t + 1
  r[10] = -1
  for k = 1, #pts + 1 do
    local hi
    if k <= #pts then hi = pts[k] - 1 else hi = mmax(horizon, lo) end
    if hi >= lo and decide(hi) then
      local a0, b0 = lo, hi
      while a0 < b0 do
        local mid = floor((a0 + b0) / 2)
        if decide(mid) then b0 = mid else a0 = mid + 1 end
      end
      r[10] = a0 - t
      break
    end
    if k <= #pts then lo = pts[k] end
  end
  return r
end

-- Rule 7: record (in D and G; written below unless DRYRUN).
r[1] = granted
for i = 1, nt do
  if X[3 * i - 1] > 0 and X[3 * i - 2] == 0 then
    if i > mmax(cur, 1) then r[7] = 1 end
    local o = 5 + 8 * i
    D[o], D[o + 1] = 1, t
    X[3 * i - 2] = 1
  end
end
r[2], r[3], r[4] = tierFields()
r[5] = LOG('sum', key, 'g.', D, GL, t - 1000) + granted
if G then r[6] = LOG('sum', gkey, 'g.', G, GL, t - 1000) + granted end

if q[4] % 2 == 1 then -- DRYRUN: X after the grant, without writing it
  if nt > 0 and X[2] > 1 then D[19] = t end
  D[GL + 4] = t
  for w, o in pairs(dcap) do
    local g = math.ceil(w / 1000)
    if D[o] >= 0 then D[o + 4] = floor(t / g) * g end
  end
  r[11] = expireAt() - t
  return r
end

for i = 1, nt do
  local o, p = 7 + 8 * i, TP[i]
  if i == 1 then
    LOG('pop', key, p, D, o, t - q[7])
  elseif X[3 * i - 2] == 0 then
    LOG('drop', key, p, D, o)
  else
    LOG('pop', key, p, D, o, mmax(t - q[2 + 5 * i], D[o - 1]))
  end
  if X[3 * i - 1] > 1 then LOG('push', key, p, D, o, t, X[3 * i - 1] - 1) end
end
if S and S[2] > nt then
  for i = nt + 1, S[2] do LOG('drop', key, TP[i], S, 7 + 8 * i) end
end

-- flush writes key k: deletes, then sets (a ONCE token remembered again replaces its
-- old self), then the header A.
local function flush(k, magic, A)
  for i = 1, #dels, 1000 do rcall('HDEL', k, unpack(dels, i, mmin(i + 999, #dels))) end
  local j = #sets
  sets[j + 1], sets[j + 2] = '@', magic .. spack('<' .. srep('d', #A), unpack(A))
  for i = 1, #sets, 1000 do rcall('HSET', k, unpack(sets, i, mmin(i + 999, #sets))) end
  sets, dels = {}, {}
end

-- Long caps on a grant: the request's windows are kept; a new one starts from the
-- second log (popped to t - 1000 first); the stored ones it leaves out are dropped.
local function writeCaps(k, A, offs, drop, AS)
  for w, o in pairs(offs) do
    local g = math.ceil(w / 1000)
    local p = 'c' .. w .. '.'
    if A[o] >= 0 then
      LOG('pop', k, p, A, o, t - w - g + 1)
    else
      A[o], A[o + 1], A[o + 2], A[o + 3], A[o + 4], A[o + 5] = 0, 0, 0, -1, -1, 0
      local prev = A[GL + 2]
      for x = A[GL], A[GL + 1] - 1 do
        local ts, cum = at(k, 'g.', x)
        LOG('push', k, p, A, o, floor(ts / g) * g, (cum - prev) % M)
        prev = cum
      end
    end
    LOG('push', k, p, A, o, floor(t / g) * g, granted)
  end
  if drop then
    for w, so in pairs(drop) do LOG('drop', k, 'c' .. w .. '.', AS, so + 1) end
  end
end

LOG('pop', key, 'g.', D, GL, t - 1000)
if next(dcap) or dropped then writeCaps(key, D, dcap, dropped, S) end
LOG('push', key, 'g.', D, GL, t, granted)

-- ONCE: forget what is older than 10 s, remember this reply.
local qh, qn, qt = D[4], D[5], D[6]
while qh < qn do
  local f = 'q.' .. qh
  local v = rcall('HGET', key, f)
  local t0 = sunpack('<d', v)
  if t - t0 <= 10000 then break end
  dels[#dels + 1] = f
  local tok = string.sub(v, 9)
  local ov = rcall('HGET', key, 'o:' .. tok)
  if ov and sunpack('<d', ov) == t0 then dels[#dels + 1] = 'o:' .. tok end
  qh = qh + 1
end

r[11] = expireAt() - t
if once then
  local j = #sets
  sets[j + 1] = 'o:' .. once
  sets[j + 2] = spack('<dddddddddddd', t, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11])
  sets[j + 3] = 'q.' .. qn
  sets[j + 4] = spack('<d', t) .. once
  qn = qn + 1
  qt = t
end
D[1], D[4], D[5], D[6] = t, qh, qn, qt
flush(key, 'CRd1', D)
-- The key lives while it matters (X), and while its newest ONCE token is remembered,
-- so that a replay within 10 s always finds it.
rcall('PEXPIRE', key, mmax(r[11], qt + 10001 - t))

if G then
  LOG('pop', gkey, 'g.', G, GL, t - 1000)
  if next(gcap) or gdropped then writeCaps(gkey, G, gcap, gdropped, GS) end
  LOG('push', gkey, 'g.', G, GL, t, granted)
  local gx = G[GL + 4] + 1001
  for w, o in pairs(gcap) do gx = mmax(gx, G[o + 4] + math.ceil(w / 1000) + w) end
  G[1] = t
  flush(gkey, 'CRg1', G)
  rcall('PEXPIRE', gkey, gx - t)
end
return r
