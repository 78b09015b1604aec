-- luv echo on Lua 5.4: luv is the libuv binding at the core of luvit, so this is the seed's
-- "luvit pipes the client to itself" server without luvit's stream layers on top.
-- Usage: lua5.4 echo.lua PORT [HOST]
local uv = require("luv")

local port = tonumber(arg[1])
local host = arg[2] or "127.0.0.1"

local server = uv.new_tcp()
assert(server:bind(host, port))
assert(server:listen(4096, function(err)
  assert(not err, err)
  local client = uv.new_tcp()
  server:accept(client)
  client:nodelay(true)
  client:read_start(function(rerr, data)
    if rerr or not data then
      -- EOF or a reset: close quietly, the server carries on.
      if not client:is_closing() then client:close() end
      return
    end
    client:write(data)
  end)
end))
io.stderr:write(string.format("luv echo listening on %s:%d (luv %s, %s)\n",
  host, port, uv.version_string(), _VERSION))
uv.run()
