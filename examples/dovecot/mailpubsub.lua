-- mailpubsub.lua: Dovecot 2.3 push_notification Lua driver script that hands
-- every mail store event to mailpubsubd's generic JSON source.
--
-- Configuration (see 90-mailpubsub.conf and README beside this file):
--   plugin {
--     push_notification_driver = lua:file=/etc/dovecot/mailpubsub.lua
--     mailpubsub_socket = /run/mailpubsub/events.sock   # Unix stream socket
--     mailpubsub_server = mail.example.com    # host part of the IMAP URLs
--     mailpubsub_timeout = 2                  # seconds for one exchange
--     mailpubsub_shared_prefix = shared/      # prefix of the shared namespace
--   }
--
-- Wire protocol: one JSON object per line ("\n" terminated, UTF-8); the
-- server answers every line with one line, in order:
--   {"ok":true,"seq":N}                       journaled
--   {"ok":false,"error":"..."}                malformed: logged, dropped
--   {"ok":false,"error":"...","retry":true}   not journaled: sent again once
-- A Dovecot process keeps one connection and reuses it across transactions.
-- The events of a transaction are sent together at its end, then the acks
-- are read.  If the socket is down the events are logged and dropped: the
-- IMAP/LMTP process never waits longer than about 2 x mailpubsub_timeout.
--
-- Events use RFC 5423 names and parameters, as Cyrus does: "event", "uri"
-- (RFC 5092 IMAP URL, mailbox owner in the authority), "user" (the session's
-- user), "timestamp", "service", "uidset", "flagNames", "oldMailboxID",
-- and the counts "messages", "uidnext", "modseq", "vnd.cmu.unseenMessages".
--
-- Lua API used (Dovecot 2.3.19, src/plugins/push-notification/
-- push-notification-driver-lua.c and src/lib-storage/mail-storage-lua.c):
-- the dovecot_lua_notify_* hooks, user.username, user.service,
-- user:plugin_getenv(), user:mailbox(vname, flags), mailbox:status(...),
-- mailbox:free(), dovecot.storage.STATUS_*, dovecot.i_error/i_warning.

local socket = require "socket"
local unix = require "socket.unix"
local cjson = require "cjson.safe"

local DEFAULT_SOCKET = "/run/mailpubsub/events.sock"

local conn = nil          -- the process's connection, reused
local conn_path = nil

-- ---------------------------------------------------------------- logging

local function log_error(msg)
  if dovecot ~= nil and dovecot.i_error ~= nil then
    dovecot.i_error("mailpubsub: " .. msg)
  else
    io.stderr:write("mailpubsub: " .. msg .. "\n")
  end
end

local function log_warning(msg)
  if dovecot ~= nil and dovecot.i_warning ~= nil then
    dovecot.i_warning("mailpubsub: " .. msg)
  else
    log_error(msg)
  end
end

-- ---------------------------------------------------------------- helpers

local function getenv(user, key, default)
  local ok, v = pcall(function() return user:plugin_getenv(key) end)
  if ok and v ~= nil and v ~= "" then return v end
  return default
end

-- JSON numbers: Lua gives the counts as floats; cjson 2.1.0 prints 14
-- significant digits, so larger values go as decimal strings (RFC 5423
-- numeric parameters are accepted as strings of digits by mailpubsubd).
local function num(x)
  if x == nil then return nil end
  local i = math.tointeger(x)
  if i == nil then i = math.tointeger(math.floor(x)) end
  if i == nil then return nil end
  if i < 100000000000000 then return i end
  return string.format("%d", i)
end

local function timestamp()
  local t = socket.gettime()
  local s = math.floor(t)
  local ms = math.floor((t - s) * 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%03d+00:00", ms)
end

-- RFC 3986 percent-encoding of everything but the unreserved characters:
-- safe in both the userinfo and a path segment (RFC 5092 enc-user and
-- enc-mailbox).  Strings are the UTF-8 bytes Dovecot hands us.
local function pct(s)
  return (string.gsub(s, "[^A-Za-z0-9%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

local function split(s, sep)
  local out, start = {}, 1
  while true do
    local i = string.find(s, sep, start, true)
    if i == nil then
      out[#out + 1] = string.sub(s, start)
      return out
    end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + #sep
  end
end

-- (owner, name as the owner sees it) of a mailbox vname seen by `username`:
-- "shared/alice/Sub" -> ("alice", "Sub") in the shared namespace,
-- anything else is the session user's own.
local function owner_and_name(ctx, vname)
  local prefix = ctx.shared_prefix
  if prefix ~= "" and string.sub(vname, 1, #prefix) == prefix then
    local rest = string.sub(vname, #prefix + 1)
    local i = string.find(rest, ctx.sep, 1, true)
    if i ~= nil then
      return string.sub(rest, 1, i - 1), string.sub(rest, i + #ctx.sep)
    end
    return rest, "INBOX"
  end
  return ctx.username, vname
end

local function mailbox_url(ctx, vname, uidvalidity)
  local owner, name = owner_and_name(ctx, vname)
  local levels = split(name, ctx.sep)
  for i, l in ipairs(levels) do levels[i] = pct(l) end
  local url = "imap://" .. pct(owner) .. "@" .. ctx.server .. "/" ..
              table.concat(levels, "/")
  if uidvalidity ~= nil and uidvalidity > 0 then
    url = url .. ";UIDVALIDITY=" .. string.format("%d", uidvalidity)
  end
  return url
end

-- "3:5,9" from a list of UIDs
local function uidset(uids)
  table.sort(uids)
  local parts, i = {}, 1
  while i <= #uids do
    local first, last = uids[i], uids[i]
    while i < #uids and (uids[i + 1] == last + 1 or uids[i + 1] == last) do
      i = i + 1
      last = uids[i]
    end
    if first == last then
      parts[#parts + 1] = string.format("%d", first)
    else
      parts[#parts + 1] = string.format("%d:%d", first, last)
    end
    i = i + 1
  end
  return table.concat(parts, ",")
end

local function flag_names(ev)
  local names = {}
  for _, f in ipairs(ev.flags or {}) do names[#names + 1] = f end
  for _, k in ipairs(ev.keywords or {}) do names[#names + 1] = k end
  return table.concat(names, " ")
end

-- Counts of a mailbox, once per transaction (nil if it cannot be opened,
-- e.g. after MailboxDelete).
local function status_of(ctx, vname)
  local cached = ctx.status[vname]
  if cached ~= nil then return cached or nil end
  local st = dovecot.storage
  local ok, res = pcall(function()
    local box = ctx.user:mailbox(vname, st.MAILBOX_FLAG_READONLY)
    local ok2, s = pcall(box.status, box, st.STATUS_MESSAGES,
                         st.STATUS_UIDNEXT, st.STATUS_UIDVALIDITY,
                         st.STATUS_UNSEEN, st.STATUS_HIGHESTMODSEQ)
    box:free()
    if not ok2 then error(s) end
    return s
  end)
  if not ok then
    ctx.status[vname] = false
    return nil
  end
  ctx.status[vname] = res
  return res
end

local function add_counts(obj, s)
  if s == nil then return end
  obj["messages"] = num(s.messages)
  obj["uidnext"] = num(s.uidnext)
  if s.highest_modseq ~= nil and s.highest_modseq > 0 then
    obj["modseq"] = num(s.highest_modseq)
  end
  obj["vnd.cmu.unseenMessages"] = num(s.unseen)
end

-- ------------------------------------------------------------- connection

local function disconnect()
  if conn ~= nil then
    conn:close()
    conn = nil
  end
end

local function connect(path, timeout)
  if conn ~= nil and conn_path == path then return conn end
  disconnect()
  local c, err = unix.stream()
  if c == nil then return nil, err end
  c:settimeout(timeout)
  local ok, cerr = c:connect(path)
  if ok == nil then
    c:close()
    return nil, cerr
  end
  conn, conn_path = c, path
  return c
end

-- Sends lines[idx] (each without "\n") and reads one ack per line.  Returns
-- ok, the indexes of lines to send again (retry:true, and on failure those
-- left without an ack) and the error if the connection failed.
local function exchange(c, lines, idx, timeout)
  -- one deadline for the whole exchange, whatever the number of lines
  local deadline = socket.gettime() + timeout
  local function arm()
    c:settimeout(math.max(0.001, deadline - socket.gettime()))
  end
  local buf = {}
  for _, i in ipairs(idx) do buf[#buf + 1] = lines[i] .. "\n" end
  local data = table.concat(buf)
  arm()
  local sent, err = c:send(data)
  if sent == nil then return false, idx, err end
  local again = {}
  for n, i in ipairs(idx) do
    arm()
    local reply, rerr = c:receive("*l")
    if reply == nil then
      for m = n, #idx do again[#again + 1] = idx[m] end
      return false, again, rerr
    end
    local ack = cjson.decode(reply)
    if type(ack) ~= "table" then
      log_error("bad reply from server: " .. reply)
    elseif ack.ok ~= true then
      if ack.retry == true then
        again[#again + 1] = i
      else
        log_error("event rejected (" .. tostring(ack.error) .. "): " ..
                  lines[i])
      end
    end
  end
  return true, again
end

local function deliver(ctx, lines)
  if #lines == 0 then return end
  local idx = {}
  for i = 1, #lines do idx[i] = i end
  for attempt = 1, 2 do
    local reused = conn ~= nil and conn_path == ctx.socket
    local c, err = connect(ctx.socket, ctx.timeout)
    if c == nil then
      log_error("cannot connect to " .. ctx.socket .. ": " .. tostring(err) ..
                "; dropped " .. #idx .. " event(s)")
      return
    end
    local ok, again, xerr = exchange(c, lines, idx, ctx.timeout)
    idx = again
    if not ok then
      disconnect()
      -- a reused connection may have been closed by a restarted server:
      -- retry the unacknowledged lines once on a fresh one (not after a
      -- timeout: the server is there but slow, and we must not stall)
      if not reused or attempt == 2 or xerr == "timeout" then
        log_error("send to " .. ctx.socket .. " failed: " .. tostring(xerr) ..
                  "; dropped " .. #idx .. " event(s)")
        return
      end
    elseif #idx == 0 then
      return
    elseif attempt == 2 then
      log_error("server asked to retry; dropped " .. #idx .. " event(s)")
    end
  end
end

-- ------------------------------------------------------ building events

local MESSAGE_EVENTS = { MessageNew = true, MessageAppend = true }
local GROUPED_EVENTS = {
  MessageExpunge = true, MessageRead = true, MessageTrash = true,
  FlagsSet = true, FlagsClear = true,
}
-- RFC 5423 spells it MailboxUnSubscribe; Dovecot MailboxUnsubscribe
local RFC_NAME = { MailboxUnsubscribe = "MailboxUnSubscribe" }

local function base_object(ctx, name)
  local obj = {}
  obj["event"] = RFC_NAME[name] or name
  obj["timestamp"] = ctx.timestamp
  if ctx.service ~= nil and ctx.service ~= "" then
    obj["service"] = ctx.service
  end
  obj["user"] = ctx.username
  return obj
end

-- Dovecot reports a FlagsSet \Seen together with MessageRead (and \Deleted
-- with MessageTrash), and a FlagsSet/FlagsClear with no flags at all beside
-- every flag change.  Like Cyrus, send MessageRead/MessageTrash instead of
-- those flags in FlagsSet, and no flag event without flags.
local function strip_flags(ctx)
  local read, trash = {}, {}
  for _, ev in ipairs(ctx.events) do
    if ev.name == "MessageRead" then
      read[ev.mailbox .. "\0" .. tostring(ev.uid)] = true
    elseif ev.name == "MessageTrash" then
      trash[ev.mailbox .. "\0" .. tostring(ev.uid)] = true
    end
  end
  for _, ev in ipairs(ctx.events) do
    if ev.name == "FlagsSet" and ev.flags ~= nil then
      local key = ev.mailbox .. "\0" .. tostring(ev.uid)
      local kept = {}
      for _, f in ipairs(ev.flags) do
        if not ((f == "\\Seen" and read[key]) or
                (f == "\\Deleted" and trash[key])) then
          kept[#kept + 1] = f
        end
      end
      ev.flags = kept
    end
  end
end

-- Flag and expunge events of a transaction become one object per (event,
-- mailbox, flags) with a uidset, as Cyrus sends them.
local function add_grouped(ctx, out, groups, ev)
  local name, fl = ev.name, ""
  if name == "FlagsSet" or name == "FlagsClear" then
    fl = flag_names(ev)
    if fl == "" then return end   -- nothing changed in this direction
  end
  local key = name .. "\0" .. ev.mailbox .. "\0" .. fl
  local g = groups[key]
  if g == nil then
    local obj = base_object(ctx, name)
    obj["uri"] = mailbox_url(ctx, ev.mailbox, ev.uid_validity)
    if fl ~= "" then obj["flagNames"] = fl end
    g = { obj = obj, uids = {}, mailbox = ev.mailbox }
    groups[key] = g
    out[#out + 1] = g
  end
  g.uids[#g.uids + 1] = ev.uid
end

local function build(ctx)
  local out, groups = {}, {}
  strip_flags(ctx)
  for _, ev in ipairs(ctx.events) do
    local name = ev.name
    if MESSAGE_EVENTS[name] then
      local obj = base_object(ctx, name)
      obj["uri"] = mailbox_url(ctx, ev.mailbox, ev.uid_validity) ..
                   "/;UID=" .. string.format("%d", ev.uid)
      obj["uidset"] = string.format("%d", ev.uid)
      if ev.flags ~= nil and (#ev.flags > 0 or #(ev.keywords or {}) > 0) then
        obj["flagNames"] = flag_names(ev)
      end
      add_counts(obj, status_of(ctx, ev.mailbox))
      if ctx.details then
        obj["vnd.dovecot.from"] = ev.from
        obj["vnd.dovecot.subject"] = ev.subject
        obj["vnd.dovecot.messageId"] = ev.message_id
        obj["vnd.dovecot.snippet"] = ev.snippet
      end
      out[#out + 1] = obj
    elseif GROUPED_EVENTS[name] then
      add_grouped(ctx, out, groups, ev)
    elseif ev.mailbox ~= nil then
      -- MailboxCreate/Delete/Rename/Subscribe/Unsubscribe
      local obj = base_object(ctx, name)
      local s = nil
      if name ~= "MailboxDelete" then s = status_of(ctx, ev.mailbox) end
      local uv = s and s.uidvalidity or nil
      obj["uri"] = mailbox_url(ctx, ev.mailbox, uv)
      if name == "MailboxRename" then
        -- Dovecot keeps UIDVALIDITY across a rename
        obj["oldMailboxID"] = mailbox_url(ctx, ev.mailbox_old or "", uv)
      end
      add_counts(obj, s)
      out[#out + 1] = obj
    else
      log_warning("ignoring event " .. tostring(name) .. " without mailbox")
    end
  end
  local lines = {}
  for _, item in ipairs(out) do
    local obj = item
    if item.uids ~= nil then
      obj = item.obj
      obj["uidset"] = uidset(item.uids)
      add_counts(obj, status_of(ctx, item.mailbox))
    end
    local line, err = cjson.encode(obj)
    if line == nil then
      log_error("cannot encode event: " .. tostring(err))
    else
      lines[#lines + 1] = line
    end
  end
  return lines
end

-- ----------------------------------------------------------- Dovecot hooks

function script_init()
  return 0
end

function script_deinit()
  disconnect()
end

function dovecot_lua_notify_begin_txn(user)
  local ctx = {
    user = user,
    username = user.username,
    service = user.service,
    events = {},
    status = {},
  }
  ctx.socket = getenv(user, "mailpubsub_socket", DEFAULT_SOCKET)
  ctx.server = getenv(user, "mailpubsub_server", "localhost")
  ctx.timeout = tonumber(getenv(user, "mailpubsub_timeout", "2")) or 2
  ctx.shared_prefix = getenv(user, "mailpubsub_shared_prefix", "shared/")
  ctx.sep = getenv(user, "mailpubsub_separator", "/")
  ctx.details = getenv(user, "mailpubsub_message_details", "no") == "yes"
  return ctx
end

local function record(ctx, event)
  ctx.events[#ctx.events + 1] = event
end

-- Every push_notification event Dovecot 2.3 has; each gets the txn context
-- and a table with name, mailbox (vname) and, for message events, uid and
-- uid_validity.  Dovecot registers only the hooks a script defines.
dovecot_lua_notify_event_message_new = record
dovecot_lua_notify_event_message_append = record
dovecot_lua_notify_event_message_expunge = record
dovecot_lua_notify_event_message_read = record
dovecot_lua_notify_event_message_trash = record
dovecot_lua_notify_event_flags_set = record
dovecot_lua_notify_event_flags_clear = record
dovecot_lua_notify_event_mailbox_create = record
dovecot_lua_notify_event_mailbox_delete = record
dovecot_lua_notify_event_mailbox_rename = record
dovecot_lua_notify_event_mailbox_subscribe = record
dovecot_lua_notify_event_mailbox_unsubscribe = record

function dovecot_lua_notify_end_txn(ctx, success)
  if not success or #ctx.events == 0 then return end
  ctx.timestamp = timestamp()
  local ok, err = pcall(function() deliver(ctx, build(ctx)) end)
  if not ok then
    disconnect()
    log_error("dropped events: " .. tostring(err))
  end
  ctx.user = nil
  ctx.status = nil
end
