-- A 4 KiB JSON POST.
local items = {}
for i = 1, 60 do
  items[#items + 1] = string.format('{"sku":"SKU-%05d","qty":%d,"note":"gift wrap, deliver after 5pm"}', i, i % 7 + 1)
end
wrk.method = "POST"
wrk.path = "/api/v1/orders"
wrk.body = '{"customer":{"name":"Ada Lovelace","email":"ada@example.test"},"items":[' .. table.concat(items, ",") .. ']}'
wrk.headers["Host"] = "api.example.test"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0"
