// What the delivery log needs to know of tasks (room, scenario, status), fetched once per task.

import { api, query } from "./lib.js";

const cache = new Map();
const MAX_FETCH = 40;  // per call: a page of attempts spans a handful of tasks

export const cachedTask = (taskId) => cache.get(taskId) || null;

export function remember(task) {
  if (task && task.task_id) cache.set(task.task_id, task);
}

export function forgetAll() { cache.clear(); }

// Fetch the tasks not seen yet (a few at a time); returns true when anything new arrived.
export async function loadTasks(taskIds) {
  const missing = [...new Set(taskIds)].filter((id) => id && !cache.has(id)).slice(0, MAX_FETCH);
  const queue = missing.slice();
  const worker = async () => {
    while (queue.length) {
      const id = queue.shift();
      try { remember(await api("GET", `/api/tasks/${encodeURIComponent(id)}`)); } catch (_) {
        cache.set(id, { task_id: id, missing: true });
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return missing.length > 0;
}

// The TaskIds matching task-level filters (scenario, outcome, room), newest 1000 at most.
export async function matchingTaskIds({ scenario, outcome, room }) {
  const data = await api("GET", `/api/tasks${query({ scenario, outcome, room_id: room, limit: 1000 })}`);
  for (const task of data.tasks) remember(task);
  return { ids: new Set(data.tasks.map((t) => t.task_id)), truncated: data.next_offset !== null };
}
