-- KEYS[1]: the active workers sorted set
-- KEYS[2]: the active job list
-- KEYS[3]: this workers inflight set
-- KEYS[4]: the task data hash
-- KEYS[5]: the signal list
-- KEYS[6]: the task metadata prefix
-- KEYS[7]: the scheduled jobs sorted set

-- ARGV[1]: current timestamp
-- ARGV[2]: maximum number of jobs to fetch
-- ARGV[3]: worker name

-- Returns: {results, meta}

local worker_inflight_set = KEYS[3]
local worker_name = ARGV[3]


-- Ensure the worker is registered
local registered = redis.call("zscore", KEYS[1], worker_name)
if not registered then
    error("Cant fetch next: worker not registered")
end

-- Lua's unpack() fails with "too many results to unpack" past LUAI_MAXCSTACK
-- (about 8000 in Redis): never unpack more than UNPACK_CHUNK ids at a time.
local UNPACK_CHUNK = 1000
local function call_chunked(cmd, key, ids)
    for i = 1, #ids, UNPACK_CHUNK do
        redis.call(cmd, key, unpack(ids, i, math.min(i + UNPACK_CHUNK - 1, #ids)))
    end
end

-- 1. Promote due scheduled jobs, the earliest first, in bounded batches: only
-- enough to bring the active list up to ACTIVE_TARGET (at least a batch).
-- A backlog of any size drains over successive fetches, each call stays short,
-- and the active list stays short (acquire_leases runs an LREM over it per task).
local ACTIVE_TARGET = math.max(1000, tonumber(ARGV[2]))
local room = ACTIVE_TARGET - redis.call("llen", KEYS[2])
local scheduled_ids = {}
if room > 0 then
    scheduled_ids = redis.call(
        "zrangebyscore",
        KEYS[7],
        0,
        ARGV[1],
        "LIMIT",
        0,
        room
    )
end

if #scheduled_ids > 0 then
    -- Push scheduled jobs onto the active queue
    call_chunked("rpush", KEYS[2], scheduled_ids)

    -- Remove promoted jobs from the scheduled set
    call_chunked("zrem", KEYS[7], scheduled_ids)

    -- Signal that jobs are available
    redis.call("del", KEYS[5])
    redis.call("lpush", KEYS[5], 1)
end

-- 2. Fetch jobs from the active queue
local task_ids = redis.call(
    "lrange",
    KEYS[2],
    0,
    tonumber(ARGV[2]) - 1
)

local count = #task_ids
local results = {}
local meta = {}

if count > 0 then
    -- Mark jobs as inflight
    call_chunked("sadd", worker_inflight_set, task_ids)

    -- Remove fetched jobs from the active queue
    redis.call("ltrim", KEYS[2], count, -1)

    -- Fetch job data (in chunks too: the batch size is configurable)
    for i = 1, count, UNPACK_CHUNK do
        local part = redis.call("hmget", KEYS[4], unpack(task_ids, i, math.min(i + UNPACK_CHUNK - 1, count)))
        for _, data in ipairs(part) do
            table.insert(results, data)
        end
    end

    -- Fetch metadata
    for _, task_id in ipairs(task_ids) do
        local meta_key = KEYS[6] .. ":" .. task_id
        local fields = redis.call("hgetall", meta_key)

        -- Insert task ID as the first element
        table.insert(fields, 1, task_id)
        table.insert(meta, fields)
    end
end

-- 3. Clear the signal if fewer jobs were fetched
-- than requested
if count < tonumber(ARGV[2]) then
    redis.call("del", KEYS[5])
end

return {results, meta}
