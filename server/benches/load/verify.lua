-- wrk script: a verify call as NGINX's auth subrequest makes it.
-- URL and COOKIE come from the environment (see verify.sh).
local url = os.getenv("ORIGINAL_URL") or "http://localhost/restaurant"
local cookie = os.getenv("COOKIE")
wrk.method = "GET"
wrk.headers["X-Original-URL"] = url
wrk.headers["X-Original-Method"] = "GET"
if cookie and cookie ~= "" then
  wrk.headers["Cookie"] = "_gatehouse=" .. cookie
end
