-- The benign API GET of benign.lua, but every request carries values never seen before (a new
-- product id, search text, session cookie and request token), so the WAF's memory of clean values
-- cannot help with them: the cost of inspecting fresh data.
local counter = 0
local words = {"red", "shoes", "linen", "shirt", "winter", "coat", "kids", "garden", "chair", "lamp"}

request = function()
  counter = counter + 1
  local id = math.random(1, 1000000000)
  local q = words[math.random(#words)] .. "+" .. words[math.random(#words)] .. "+" .. counter
  local path = "/api/v1/products?id=" .. id .. "&q=" .. q .. "&sort=price&lang=en-US"
  local headers = {
    ["Host"] = "api.example.test",
    ["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    ["Accept"] = "application/json, text/plain, */*",
    ["Accept-Language"] = "en-US,en;q=0.9,de;q=0.8",
    ["Accept-Encoding"] = "gzip, deflate, br",
    ["Referer"] = "https://www.example.test/shop/catalog?page=" .. (counter % 50),
    ["Cookie"] = string.format("session=%08x%08x%08x%08x; _ga=GA1.2.%d.1700000000; theme=dark",
      math.random(0, 0x7fffffff), math.random(0, 0x7fffffff), counter, id, id),
    ["X-Request-Token"] = string.format("%x-%x", id, counter),
  }
  return wrk.format("GET", path, headers)
end
