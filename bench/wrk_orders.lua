-- wrk script: POST a valid order (a different customer each request).
local n = 0
request = function()
  n = n + 1
  local body = string.format(
    '{"sku":"A-1","qty":1,"amount":9.5,"customer":"c%d"}', n)
  return wrk.format("POST", nil,
    {["Content-Type"] = "application/json"}, body)
end
