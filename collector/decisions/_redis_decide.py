"""A decision's one round trip to Redis: the documents and only the candidates it can use.

``DECIDE`` reads the asked ids' documents, follows aliases, and for each profile they resolve
to computes the query ``query_for`` will make of it (seeds, top categories, limit) and the
candidates ``rank`` can reach for that query, cut after the first K + E (related) or 2K + E
(category, popular) entries in rank's order, E being the products rank excludes. It answers
one JSON text, which the client parses in C (a nested reply costs redis-py's Python parser
microseconds per element). ``candidates`` then finds a query's candidates by
:func:`query_key`; a query the queue changed (queued events named other seeds or categories)
falls back on the whole lists, which the script adds only in that case.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from journeykit.collector.decisions._recommend import EXTRA
from journeykit.collector.decisions._store import CandidateQuery, Candidates, Doc, ItemLists

__all__ = ["DECIDE", "decode", "prefetched"]

# ARGV: prefix, K, alias hops, then counted runs of ids, extra seeds and extra categories (the
# seeds and categories of the ids' queued events). Reads the ids' documents following aliases
# and returns {limit, {id, doc, ...}, {list key, items, ...}, {query, ...}}:
# - per profile an id resolves to (none: a newcomer's empty profile), the query rank() will
#   make of it, {limit, seeds, categories, related, in category, popular}, with only the
#   entries rank() can reach: the sum of the seeds' co-occurrence lists (each cut at limit) and
#   the categories' and popular lists, each cut after its first n entries in rank()'s order
#   (heaviest, then by item), n = K + E for related and 2K + E for the others,
#   E the products rank() excludes (bought, in the cart): it skips at most E excluded entries,
#   plus in the later lists at most K already taken and K repeated across the categories. When
#   the limit is capped (E + seeds >= EXTRA) the client's E cannot be told from its query, so
#   nothing is cut beyond the limit;
# - only with extra seeds or categories (the queue may change the query): each list the
#   documents and the queue name, read from the top to the limit rank() would likely ask, as
#   the client's query may then differ from every stored document's.
DECIDE = """
local p, k, hops = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local i = 4
local ids = {}
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do ids[#ids + 1] = ARGV[i]; i = i + 1 end
local seeds, seedlist, cats, catlist = {}, {}, {}, {}
local function seed(s)
  if type(s) == 'string' and not seeds[s] then seeds[s] = true; seedlist[#seedlist + 1] = s end
end
local function cat(c)
  if not cats[c] then cats[c] = true; catlist[#catlist + 1] = c end
end
n = tonumber(ARGV[i]); i = i + 1
local hinted, excluded = n, n
for _ = 1, n do seed(ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
hinted = hinted + n
for _ = 1, n do cat(ARGV[i]); i = i + 1 end
local function top2(weights)
  local a, b
  if type(weights) == 'table' then
    for name, w in pairs(weights) do
      if a == nil or w > weights[a] or (w == weights[a] and name < a) then
        b = a; a = name
      elseif b == nil or w > weights[b] or (w == weights[b] and name < b) then
        b = name
      end
    end
  end
  return a, b
end
local docs, decoded, seen, asked = {}, {}, {}, ids
for _ = 0, hops do
  local nxt = {}
  for _, id in ipairs(ids) do
    if not seen[id] then
      seen[id] = true
      local raw = redis.call('GET', p .. 'p:' .. id)
      if raw then
        docs[#docs + 1] = id
        docs[#docs + 1] = raw
        local doc = cjson.decode(raw)
        decoded[id] = doc
        if doc.alias then nxt[#nxt + 1] = doc.alias end
      end
    end
  end
  if #nxt == 0 then break end
  ids = nxt
end
-- One JSON text: the client parses it in C, where a nested reply costs redis-py's Python
-- parser microseconds per element. Documents are stored JSON, spliced in as they are.
local function reply(limit, lists, queries)
  local parts = {'{"limit":', tostring(limit), ',"docs":{'}
  for j = 1, #docs, 2 do
    parts[#parts + 1] = (j > 1 and ',' or '') .. cjson.encode(docs[j]) .. ':'
    parts[#parts + 1] = docs[j + 1]
  end
  parts[#parts + 1] = '},"lists":'
  parts[#parts + 1] = cjson.encode(lists)
  parts[#parts + 1] = ',"queries":'
  parts[#parts + 1] = cjson.encode(queries)
  parts[#parts + 1] = '}'
  return table.concat(parts)
end
if k == 0 then return reply(0, {}, {}) end
local cache = {}
local function zrev(key, limit)
  local ck = key .. ' ' .. limit
  local got = cache[ck]
  if got == nil then
    got = redis.call('ZREVRANGE', p .. key, 0, limit - 1, 'WITHSCORES')
    cache[ck] = got
  end
  return got
end
-- a before b in code point order (Python's str order, the byte order of UTF-8), not Lua's `<`,
-- which follows the server's locale
local function before(a, b)
  for j = 1, math.min(#a, #b) do
    local c, d = string.byte(a, j), string.byte(b, j)
    if c ~= d then return c < d end
  end
  return #a < #b
end
-- the first n entries (item, score string) in rank()'s order, heaviest first then by item;
-- only the entries tied at the n-th score are compared by item
local function cut(items, strs, nums, n)
  local out, m = {}, #items
  if m <= n then
    for j = 1, m do out[#out + 1] = items[j]; out[#out + 1] = strs[j] end
    return out
  end
  local sorted = {}
  for j = 1, m do sorted[j] = nums[j] end
  table.sort(sorted)
  local nth, tied = sorted[m - n + 1], {}
  for j = 1, m do
    local x = nums[j]
    if x > nth then
      out[#out + 1] = items[j]; out[#out + 1] = strs[j]
    elseif x == nth then
      tied[#tied + 1] = j
    end
  end
  local room = n - #out / 2
  if #tied > room then
    table.sort(tied, function(a, b) return before(items[a], items[b]) end)
  end
  for j = 1, room do
    out[#out + 1] = items[tied[j]]; out[#out + 1] = strs[tied[j]]
  end
  return out
end
local function lists_of(keys, limit, n)
  local items, strs, nums = {}, {}, {}
  for _, key in ipairs(keys) do
    local flat = zrev(key, limit)
    for j = 1, #flat, 2 do
      items[#items + 1] = flat[j]; strs[#strs + 1] = flat[j + 1]
      nums[#nums + 1] = tonumber(flat[j + 1])
    end
  end
  return cut(items, strs, nums, n)
end
local function query(doc)
  local s, sl, excl, e = {}, {}, {}, 0
  if doc then
    local recent = doc.recent
    if type(recent) == 'table' then
      for j = #recent, math.max(1, #recent - 4), -1 do
        local pid = recent[j][1]
        if type(pid) ~= 'string' then return nil end
        if not s[pid] then s[pid] = true; sl[#sl + 1] = pid end
      end
    end
    if type(doc.cart) == 'table' then
      for pid in pairs(doc.cart) do
        if not s[pid] then s[pid] = true; sl[#sl + 1] = pid end
        if not excl[pid] then excl[pid] = true; e = e + 1 end
      end
    end
    if type(doc.bought) == 'table' then
      for _, pid in ipairs(doc.bought) do
        if not excl[pid] then excl[pid] = true; e = e + 1 end
      end
    end
  end
  local cl = {}
  local a, b = top2(doc and doc.cats)
  if a then cl[#cl + 1] = a end
  if b then cl[#cl + 1] = b end
  local limit = k + math.min(e + #sl, EXTRA)
  local big = e + #sl >= EXTRA and math.huge
  local related, order = {}, {}
  for _, pid in ipairs(sl) do
    local flat = zrev('co:' .. pid, limit)
    for j = 1, #flat, 2 do
      local item = flat[j]
      if related[item] == nil then order[#order + 1] = item; related[item] = 0 end
      related[item] = related[item] + tonumber(flat[j + 1])
    end
  end
  local strs, nums = {}, {}
  for j, item in ipairs(order) do
    nums[j] = related[item]; strs[j] = string.format('%.17g', related[item])
  end
  local catkeys = {}
  for j, c in ipairs(cl) do catkeys[j] = 'cat:' .. c end
  return {limit, sl, cl, cut(order, strs, nums, big or k + e),
          lists_of(catkeys, limit, big or 2 * k + e), lists_of({'pop'}, limit, big or 2 * k + e)}
end
local queries, done = {}, {}
for _, id in ipairs(asked) do
  local doc, final = decoded[id], id
  for _ = 1, 4 do
    if doc == nil or doc.alias == nil then break end
    final = doc.alias
    doc = decoded[final]
  end
  if doc ~= nil and doc.alias ~= nil then doc = nil end
  if doc == nil then final = '' end
  if not done[final] then
    done[final] = true
    local q = query(doc)
    if q then queries[#queries + 1] = q end
  end
end
local lists, limit = {}, 0
if hinted > 0 then
  for _, doc in pairs(decoded) do
    if not doc.alias then
      local recent = doc.recent
      if type(recent) == 'table' then
        for j = #recent, math.max(1, #recent - 4), -1 do seed(recent[j][1]) end
      end
      if type(doc.cart) == 'table' then
        for pid in pairs(doc.cart) do seed(pid); excluded = excluded + 1 end
      end
      if type(doc.bought) == 'table' then excluded = excluded + #doc.bought end
      local a, b = top2(doc.cats)
      if a then cat(a) end
      if b then cat(b) end
    end
  end
  limit = k + math.min(excluded + #seedlist, EXTRA)
  for _, s in ipairs(seedlist) do
    lists['co:' .. s] = zrev('co:' .. s, limit)
  end
  for _, c in ipairs(catlist) do
    lists['cat:' .. c] = zrev('cat:' .. c, limit)
  end
  lists['pop'] = zrev('pop', limit)
end
return reply(limit, lists, queries)
""".replace("EXTRA", str(EXTRA))


def _flat_pairs(flat: list[str]) -> list[tuple[str, float]]:
    # An empty Lua table is encoded as {}: iterating it yields nothing as well.
    return [(flat[j], float(flat[j + 1])) for j in range(0, len(flat), 2)]


def decode(raw: bytes) -> tuple[dict[str, Doc], ItemLists]:
    """The documents and item lists of the script's answer."""
    found = orjson.loads(raw)
    limit = found["limit"]
    docs: dict[str, Doc] = found["docs"] or {}
    lists: ItemLists = {key: (limit, _flat_pairs(flat)) for key, flat in found["lists"].items()}
    for q_limit, q_seeds, q_cats, related, in_category, popular in found["queries"]:
        key = query_key(q_limit, list(q_seeds), list(q_cats))
        lists[key + "r"] = (q_limit, _flat_pairs(related))
        lists[key + "c"] = (q_limit, _flat_pairs(in_category))
        lists[key + "p"] = (q_limit, _flat_pairs(popular))
    return docs, lists


def query_key(limit: int, seeds: Sequence[str], categories: Sequence[str]) -> str:
    """Where the candidates the script computed for one query are kept in the item lists."""
    return "q" + orjson.dumps([limit, sorted(seeds), sorted(categories)]).decode()


def prefetched(lists: ItemLists, q: CandidateQuery) -> Candidates | None:
    """The script's candidates for a query like ``q`` (same limit, seeds, categories), if any.

    They hold only the entries rank() can reach for that query (see ``DECIDE``), so they
    answer exactly as the whole lists would.
    """
    if not all(isinstance(s, str) for s in q.seeds):
        return None  # the script computes no query for such a profile
    key = query_key(q.limit, q.seeds, q.categories)
    related = lists.get(key + "r")
    if related is None:
        return None
    return Candidates(related[1], lists[key + "c"][1], lists[key + "p"][1])
