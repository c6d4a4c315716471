-- wrk script: POST JSON questions to QUELLE_PATH with an API key; prints one JSON line of results at the end.
local path = os.getenv("QUELLE_PATH") or "/v1/search"
local key = os.getenv("QUELLE_KEY") or ""
local field = path == "/v1/ask" and "question" or "query"
local questions = {
  "How many days of paid annual leave do I get?", "How long is parental leave?",
  "When do I need a doctor's note?", "What is the per diem outside Europe?",
  "Who approves expenses above 2,000 EUR?", "How do I report a phishing email?",
  "What is the password policy?", "年次有給休暇は何日ですか？", "差旅报销的标准是什么？",
  "Can I work from home?",
}
-- QUELLE_QUESTIONS: a file with one question per line (already JSON-escaped), replacing the list above
local file = os.getenv("QUELLE_QUESTIONS")
if file and file ~= "" then
  questions = {}
  for line in io.lines(file) do
    if line ~= "" then questions[#questions + 1] = line end
  end
end

request = function()
  local q = questions[math.random(#questions)]
  local body = '{"' .. field .. '": "' .. q .. '", "top_k": 5}'
  return wrk.format("POST", path, {["Content-Type"] = "application/json",
                                   ["Authorization"] = "Bearer " .. key}, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.3f, "rps": %.2f, "p50_ms": %.2f, "p90_ms": %.2f, "p99_ms": %.2f, ' ..
    '"max_ms": %.2f, "non_2xx": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect, e.read, e.write, e.timeout))
end
