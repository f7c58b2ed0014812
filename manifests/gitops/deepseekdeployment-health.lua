-- Argo CD health check for deepseek.ai/DeepSeekDeployment (resource.customizations).
--
-- It applies the rules kstatus (sigs.k8s.io/cli-utils) uses for custom resources, so
-- Argo CD, Flux and `kubectl wait` read a DSD the same way; e2e/gitops/test_health.py
-- checks both against the operator's status fixtures:
--   being deleted                              -> Progressing  (kstatus Terminating)
--   status.observedGeneration != generation   -> Progressing  (kstatus InProgress)
--   condition Reconciling=True                 -> Progressing  (kstatus InProgress)
--   condition Stalled=True                     -> Degraded     (kstatus Failed)
--   condition Ready=False or Unknown           -> Progressing  (kstatus InProgress)
--   condition Ready=True, or no conditions     -> Healthy      (kstatus Current)
-- The message is the deciding condition's message, so the Argo CD UI says what to do
-- (for an unplannable spec: what to change).

local function condition(conditions, kind)
  for _, c in ipairs(conditions or {}) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function message(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local hs = {}
local meta = obj.metadata or {}
local st = obj.status or {}

if meta.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Resource scheduled for deletion"
  return hs
end

if st.observedGeneration ~= nil and meta.generation ~= nil
    and st.observedGeneration ~= meta.generation then
  hs.status = "Progressing"
  hs.message = "generation " .. tostring(math.floor(meta.generation))
    .. " not yet observed (status describes " .. tostring(math.floor(st.observedGeneration)) .. ")"
  return hs
end

local reconciling = condition(st.conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = message(reconciling, "Reconciling")
  return hs
end

local stalled = condition(st.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = message(stalled, "Stalled")
  return hs
end

local ready = condition(st.conditions, "Ready")
if ready ~= nil and ready.status ~= "True" then
  hs.status = "Progressing"
  hs.message = message(ready, "Resource not Ready")
  return hs
end

hs.status = "Healthy"
hs.message = message(ready, "Resource is current")
return hs
