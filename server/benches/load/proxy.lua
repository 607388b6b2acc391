-- wrk script for proxy.sh: a browser-less request, with the session cookie when COOKIE is set.
local cookie = os.getenv("COOKIE")
wrk.method = "GET"
if cookie and cookie ~= "" then
  wrk.headers["Cookie"] = "_gatehouse=" .. cookie
end
