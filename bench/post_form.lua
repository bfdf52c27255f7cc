-- A 64 KiB urlencoded form POST.
local fields = {}
for i = 1, 640 do
  fields[#fields + 1] = string.format("field%04d=%s", i, string.rep("lorem+ipsum+", 7))
end
wrk.method = "POST"
wrk.path = "/forms/submit"
wrk.body = table.concat(fields, "&")
wrk.headers["Host"] = "api.example.test"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["User-Agent"] = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Safari/605.1.15"
