-- wrk script: POST /message/template (the sandbox's send) with a valid access token.
-- ARGS: [1] journey token (from POST /journey/get-token), [2] access token (optional),
--       [3] phone the journey token was issued for (optional, default 84987654321).
-- Usage: wrk -t2 -c200 -d10s -s wrk_send.lua http://127.0.0.1:8765/message/template -- JT
-- Or let `python -m worker.sandbox.bench` start a sandbox, get the token and run wrk.

function init(args)
  local journey_token = args[1] or error("usage: ... -- JOURNEY_TOKEN [ACCESS_TOKEN] [PHONE]")
  local access_token = args[2] or "sandbox-access-token"
  local phone = args[3] or "84987654321"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["access_token"] = access_token
  wrk.headers["journey_token"] = journey_token
  wrk.body = '{"phone":"' .. phone .. '","template_id":"231001",' ..
    '"template_data":{"order_code":"ORD-1","status":"shipped"},"tracking_id":"bench"}'
end
