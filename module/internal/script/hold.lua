-- CHARON.RESERVE, RELEASE, RENEW, TRANSFER and SEIZE as one server-side script:
-- Charon's script engine for servers that cannot load the module. Same rules, same
-- replies (the module's RESP2 arrays, in its order; fence as a decimal string, since
-- it needs 64 bits and Lua numbers are doubles). Built and sent by the Go runner
-- (module/internal/script), which validates ARGV and draws hold ids.
--
-- KEYS: the domain key, then the GLOBAL key (when ARGV says so), then the group keys.
-- ARGV[1] op ('reserve', 'release', 'renew', 'transfer', 'seize'), ARGV[2] now (AT),
-- ARGV[3] 1 when KEYS[2] is the GLOBAL key, else 0, then per op:
--   reserve:  max min limit(-1: none) glimit lease dryrun(0/1) newid once glimits...
--             (one limit per group key, in KEYS order)
--   release:  hold copies(0: all)
--   renew:    hold lease
--   seize:    hold lease
--   transfer: hold copies(0: all) ttl newid once
--
-- Never reads the server's clock: the client sends the time; the effective time is
-- the newest of it and every key's stored time (rule 8 of the rate contract).
--
-- Storage: each key is a HASH. "@" is the header: magic "CRh1", then little-endian
-- doubles newest, fence (ms part, sequence part: fence = ms * 2^20 + seq), copies of
-- all stored holds, number of stored holds, once queue head and next, the newest
-- token's t0 (-1: none), then the ids
-- of the first and last hold (16 hex digits, zeros: none). Each hold is the field
-- "<id>" (16 hex digits) = copies, deadline (doubles), previous id, next id: a list
-- sorted by deadline, so expired holds are pruned from the front and a hold whose
-- deadline is the latest (one lease per resource, the common case) is linked at the
-- back in O(1). ONCE: "o:<token>" = t0 + the reply; queue "q.<seq>" = t0 + token.

local NONE = '0000000000000000'
local SEQ = 1048576 -- 2^20

local function fail(msg) return error({err = msg}) end

local function typeError(key, ty)
  if ty == 'charon-rl' or ty == 'charon-hd' then
    return 'WRONGTYPE ' .. key .. ' was written by the Charon module engine (type ' .. ty ..
      '): the script engine does not read it; use the module while it lives, or delete it'
  end
  return 'WRONGTYPE Operation against a key holding the wrong kind of value'
end

local function fmtInt(v) return string.format('%.0f', v) end

-- A key's state, read on demand.
local function load(key)
  local K = {key = key, recs = {}, dirty = {}, dels = {}}
  local ty = redis.call('TYPE', key).ok
  if ty == 'none' then
    K.exists = false
    K.newest, K.fm, K.fs, K.total, K.count, K.qh, K.qn, K.qt = -1, 0, 0, 0, 0, 0, 0, -1
    K.head, K.tail = NONE, NONE
    return K
  end
  if ty ~= 'hash' then return fail(typeError(key, ty)) end
  local h = redis.call('HGET', key, '@')
  if not h then return fail(typeError(key, ty)) end
  local m = string.sub(h, 1, 4)
  if m ~= 'CRh1' then
    if m == 'CRd1' or m == 'CRg1' then return fail('WRONGTYPE ' .. key .. ' holds a rate log (CHARON.RATE), not holds') end
    return fail('ERR ' .. key .. ': unknown Charon script-engine format ' .. string.format('%q', m))
  end
  K.exists = true
  local pos
  K.newest, K.fm, K.fs, K.total, K.count, K.qh, K.qn, K.qt, pos = struct.unpack('<dddddddd', h, 5)
  K.head = string.sub(h, pos, pos + 15)
  K.tail = string.sub(h, pos + 16, pos + 31)
  return K
end

-- rec returns the hold id's record {copies, deadline, prev, next} or nil.
local function rec(K, id)
  if id == NONE or not K.exists then return nil end
  local r = K.recs[id]
  if r == nil then
    local v = redis.call('HGET', K.key, id)
    if v then
      local c, d = struct.unpack('<dd', v)
      r = {copies = c, deadline = d, prev = string.sub(v, 17, 32), next = string.sub(v, 33, 48)}
    else
      r = false
    end
    K.recs[id] = r
  end
  return r or nil
end

local function touch(K, id) K.dirty[id] = true end

-- live is the copies held at t: all stored copies minus the expired front.
local function live(K, t)
  local s = K.total
  local id = K.head
  while id ~= NONE do
    local r = rec(K, id)
    if r.deadline > t then break end
    s = s - r.copies
    id = r.next
  end
  return s
end

local function unlink(K, id, r)
  if r.prev ~= NONE then rec(K, r.prev).next = r.next; touch(K, r.prev) else K.head = r.next end
  if r.next ~= NONE then rec(K, r.next).prev = r.prev; touch(K, r.next) else K.tail = r.prev end
end

-- link places a record by deadline, after any hold with the same deadline: from both
-- ends at once, so the common case (the latest deadline) is O(1).
local function link(K, id, r)
  local after = NONE -- the hold to insert after
  local a, b = K.tail, K.head
  while true do
    if a == NONE then after = NONE; break end
    local ra = rec(K, a)
    if ra.deadline <= r.deadline then after = a; break end
    if b ~= NONE then
      local rb = rec(K, b)
      if rb.deadline > r.deadline then after = rb.prev; break end
      b = rb.next
    end
    a = ra.prev
  end
  r.prev = after
  if after == NONE then
    r.next = K.head
    K.head = id
  else
    local ra = rec(K, after)
    r.next = ra.next
    ra.next = id
    touch(K, after)
  end
  if r.next ~= NONE then rec(K, r.next).prev = id; touch(K, r.next) else K.tail = id end
  K.recs[id] = r
  touch(K, id)
end

local function remove(K, id)
  local r = rec(K, id)
  unlink(K, id, r)
  K.total = K.total - r.copies
  K.count = K.count - 1
  K.recs[id] = false
  K.dirty[id] = nil
  K.dels[#K.dels + 1] = id
end

local function insert(K, id, copies, deadline)
  if rec(K, id) then return fail('ERR ID: a hold with this id exists already') end
  K.exists = true
  link(K, id, {copies = copies, deadline = deadline})
  K.total = K.total + copies
  K.count = K.count + 1
end

-- prune drops the holds whose deadline is at or before t.
local function prune(K, t)
  while K.head ~= NONE do
    local r = rec(K, K.head)
    if r.deadline > t then break end
    remove(K, K.head)
  end
end

-- liveHold: the record of id if it is held at t.
local function liveHold(K, id, t)
  local r = rec(K, id)
  if r and r.deadline > t then return r end
  return nil
end

local function fenceString(fm, fs)
  -- fm * 2^20 + fs in decimal, exactly: fm = q * 10^7 + r.
  local q, r = math.floor(fm / 1e7), fm % 1e7
  local hi = q * SEQ
  local lo = r * SEQ + fs
  hi = hi + math.floor(lo / 1e7)
  lo = lo % 1e7
  if hi == 0 then return fmtInt(lo) end
  return fmtInt(hi) .. string.format('%07d', lo)
end

-- nextFence: max(1 + the largest fence stored in any key, t * 2^20), as (ms, seq).
local function nextFence(keys, t)
  local fm, fs = 0, 0
  for _, K in ipairs(keys) do
    if K.exists and (K.fm > fm or (K.fm == fm and K.fs > fs)) then fm, fs = K.fm, K.fs end
  end
  fs = fs + 1
  if fs == SEQ then fm, fs = fm + 1, 0 end
  if t > fm then fm, fs = t, 0 end
  return fm, fs
end

-- Reply encoding for ONCE: 'i<int>', 's<string>' or 'n' per field, joined by newlines.
local function encode(r)
  local out = {}
  for i = 1, r.n do
    local v = r[i]
    if v == false then out[i] = 'n'
    elseif type(v) == 'number' then out[i] = 'i' .. fmtInt(v)
    else out[i] = 's' .. v end
  end
  return table.concat(out, '\n')
end

local function decode(s)
  local r = {}
  for f in string.gmatch(s .. '\n', '([^\n]*)\n') do
    local k, v = string.sub(f, 1, 1), string.sub(f, 2)
    if k == 'n' then r[#r + 1] = false
    elseif k == 'i' then r[#r + 1] = tonumber(v)
    else r[#r + 1] = v end
  end
  return r
end

-- write stores a key after a change: its header and changed records, its expiry at
-- its latest deadline + 1 (on the request's time line, relative to t), or deletes it
-- when it holds nothing.
local function write(K, t)
  -- Rule 7: the latest deadline + 1; and not before the newest ONCE token's t0 +
  -- 10,001 (a replay must find the key) nor before the millisecond after its fence's
  -- (a grant in that millisecond must see the fence, so fences never repeat).
  local x = 0
  if K.tail ~= NONE then x = rec(K, K.tail).deadline + 1 end
  if K.qt >= 0 and K.qt + 10001 > x then x = K.qt + 10001 end
  if (K.fm > 0 or K.fs > 0) and K.fm + 1 > x then x = K.fm + 1 end
  if x <= t then
    redis.call('DEL', K.key)
    return
  end
  local sets = {}
  for id in pairs(K.dirty) do
    local r = K.recs[id]
    if r then
      sets[#sets + 1] = id
      sets[#sets + 1] = struct.pack('<dd', r.copies, r.deadline) .. r.prev .. r.next
    end
  end
  if K.onceSets then
    for _, v in ipairs(K.onceSets) do sets[#sets + 1] = v end
  end
  sets[#sets + 1] = '@'
  sets[#sets + 1] = 'CRh1' .. struct.pack('<dddddddd', K.newest, K.fm, K.fs, K.total, K.count, K.qh, K.qn, K.qt) .. K.head .. K.tail
  local d = K.dels
  for i = 1, #d, 1000 do
    redis.call('HDEL', K.key, unpack(d, i, math.min(i + 999, #d)))
  end
  for i = 1, #sets, 1000 do
    redis.call('HSET', K.key, unpack(sets, i, math.min(i + 999, #sets)))
  end
  redis.call('PEXPIRE', K.key, x - t)
end

-- ONCE bookkeeping on the domain key: forget tokens older than 10 s, remember this one.
local function remember(K, t, token, r)
  K.onceSets = K.onceSets or {}
  while K.qh < K.qn do
    local f = 'q.' .. fmtInt(K.qh)
    local v = redis.call('HGET', K.key, f)
    local t0 = struct.unpack('<d', v)
    if t - t0 <= 10000 then break end
    K.dels[#K.dels + 1] = f
    local tok = string.sub(v, 9)
    local ov = redis.call('HGET', K.key, 'o:' .. tok)
    if ov and struct.unpack('<d', ov) == t0 then K.dels[#K.dels + 1] = 'o:' .. tok end
    K.qh = K.qh + 1
  end
  if token then
    local so = K.onceSets
    so[#so + 1] = 'o:' .. token
    so[#so + 1] = struct.pack('<d', t) .. encode(r)
    so[#so + 1] = 'q.' .. fmtInt(K.qn)
    so[#so + 1] = struct.pack('<d', t) .. token
    K.qn = K.qn + 1
    K.qt = t
  end
end

local function out(r)
  local o = {}
  for i = 1, r.n do o[i] = r[i] end
  return o
end

-------------------------------------------------------------------------------
local op = ARGV[1]
local now = tonumber(ARGV[2])
local hasG = ARGV[3] == '1'
local keys = {}
for i, k in ipairs(KEYS) do keys[i] = load(k) end
local dom = keys[1]
local t = now
for _, K in ipairs(keys) do
  if K.exists and K.newest > t then t = K.newest end
end

local function commit(fenceM, fenceS)
  for _, K in ipairs(keys) do
    if K.exists then
      K.newest = math.max(K.newest, t)
      if fenceM and (fenceM > K.fm or (fenceM == K.fm and fenceS > K.fs)) then K.fm, K.fs = fenceM, fenceS end
      write(K, t)
    end
  end
end

local function replay(token)
  if token and dom.exists then
    local v = redis.call('HGET', dom.key, 'o:' .. token)
    if v then
      local t0 = struct.unpack('<d', v)
      if t - t0 <= 10000 then return decode(string.sub(v, 9)) end
    end
  end
  return nil
end

if op == 'reserve' then
  local maxv, minv = tonumber(ARGV[4]), tonumber(ARGV[5])
  local limit, glimit = tonumber(ARGV[6]), tonumber(ARGV[7])
  local lease = tonumber(ARGV[8])
  local dry = ARGV[9] == '1'
  local newid = ARGV[10]
  local token = ARGV[11]
  if token == '' then token = nil end
  local rp = replay(token)
  if rp then return rp end
  local lims = {limit}
  local a = 2
  if hasG then lims[2] = glimit; a = 3 end
  for i = 12, #ARGV do lims[a] = tonumber(ARGV[i]); a = a + 1 end
  local function limitName(i)
    if i == 1 then return 'domain' end
    if hasG and i == 2 then return 'global' end
    if hasG then return 'group:' .. (i - 2) end
    return 'group:' .. (i - 1)
  end
  local granted, minRoom, by = maxv, maxv, 'none'
  local need = math.max(minv, 1)
  local held, gheld = 0, -1
  local lv = {}
  for i, K in ipairs(keys) do
    lv[i] = live(K, t)
    if i == 1 then held = lv[i] end
    if hasG and i == 2 then gheld = lv[i] end
    if lims[i] >= 0 then
      local room = math.max(lims[i] - lv[i], 0)
      if room < minRoom then minRoom, by = room, limitName(i) end
      if room < granted then granted = room end
    end
  end
  if granted < minv or granted == 0 then
    -- retry_after: per short key, the deadline by which enough of its live copies end.
    local ra = 0
    for i, K in ipairs(keys) do
      if lims[i] >= 0 then
        local room = math.max(lims[i] - lv[i], 0)
        if room < need and ra >= 0 then
          if lims[i] < need then
            ra = -1
          else
            local free, sum = need - room, 0
            local id = K.head
            while id ~= NONE do
              local r = rec(K, id)
              if r.deadline > t then
                sum = sum + r.copies
                if sum >= free then ra = math.max(ra, r.deadline - t); break end
              end
              id = r.next
            end
          end
        end
      end
    end
    if ra == 0 then ra = -1 end
    return {0, false, held, limit, gheld, by, 0, ra, '0'}
  end
  local deadline = t + lease
  if hasG then gheld = gheld + granted end
  if dry then -- no fence: nothing is granted
    return {granted, false, held + granted, limit, gheld, by, deadline, 0, '0'}
  end
  local fm, fs = nextFence(keys, t)
  local fence = fenceString(fm, fs)
  for _, K in ipairs(keys) do
    prune(K, t)
    insert(K, newid, granted, deadline)
  end
  local r = {granted, newid, held + granted, limit, gheld, by, deadline, 0, fence, n = 9}
  if token or dom.qh < dom.qn then remember(dom, t, token, r) end
  commit(fm, fs)
  return out(r)
end

local id = ARGV[4]
if op == 'release' then
  local copies = tonumber(ARGV[5])
  local found, rc, remaining, deadline = false, 0, 0, 0
  for i, K in ipairs(keys) do
    local r = liveHold(K, id, t)
    if r then
      local n = r.copies
      if copies > 0 and copies < n then n = copies end
      if i == 1 or not found then rc = n end
      if i == 1 then
        remaining = r.copies - n
        if remaining > 0 then deadline = r.deadline end
      end
      found = true
    end
  end
  local held = live(dom, t)
  if liveHold(dom, id, t) then held = held - rc end
  if found then
    for _, K in ipairs(keys) do
      if K.exists then
        prune(K, t)
        local r = rec(K, id)
        if r then
          if copies > 0 and copies < r.copies then
            r.copies = r.copies - copies
            K.total = K.total - copies
            touch(K, id)
          else
            remove(K, id)
          end
        end
      end
    end
    commit()
  end
  return {rc, remaining, deadline, held}
end

if op == 'renew' or op == 'seize' then
  local lease = tonumber(ARGV[5])
  local r = liveHold(dom, id, t)
  if not r then return fail('LOST the hold is not held (unknown, released or expired)') end
  local c = r.copies
  local held = live(dom, t)
  local deadline = t + lease
  local fm, fs
  if op == 'seize' then fm, fs = nextFence(keys, t) end
  for _, K in ipairs(keys) do
    if K.exists then
      prune(K, t)
      local kr = rec(K, id)
      if kr then
        unlink(K, id, kr)
        kr.deadline = deadline
        link(K, id, kr)
      end
    end
  end
  commit(fm, fs)
  if op == 'seize' then return {c, c, deadline, held, fenceString(fm, fs)} end
  return {c, c, deadline, held}
end

if op == 'transfer' then
  local copies, ttl, newid = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
  local token = ARGV[8]
  if token == '' then token = nil end
  local rp = replay(token)
  if rp then return rp end
  local r = liveHold(dom, id, t)
  if not r then return fail('LOST the hold is not held (unknown, released or expired)') end
  local c = r.copies
  local n = c
  if copies > 0 then
    if copies > c then return fail('ERR COPIES: the hold has only ' .. fmtInt(c) .. ' copies') end
    n = copies
  end
  local held = live(dom, t)
  local deadline = t + ttl
  for _, K in ipairs(keys) do
    if K.exists then
      prune(K, t)
      local kr = rec(K, id)
      if kr then
        local m = math.min(n, kr.copies)
        if m >= kr.copies then
          remove(K, id)
        else
          kr.copies = kr.copies - m
          K.total = K.total - m
          touch(K, id)
        end
        insert(K, newid, m, deadline)
      end
    end
  end
  local res = {n, newid, deadline, c - n, held, n = 5}
  if token or dom.qh < dom.qn then remember(dom, t, token, res) end
  commit()
  return out(res)
end

return fail('ERR unknown operation ' .. tostring(op))
