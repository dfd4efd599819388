// The tasktable dashboard: polls the JSON API and renders one card per queue and the dead tasks.
// Data reaches the DOM only through textContent and attributes, never as HTML.
'use strict';

(() => {
    /** The counts and the dead tasks: fresh enough to watch a queue drain (two queries; the chart's, below). */
    const REFRESH_MS = 2000;
    /**
     * The chart counts per minute, so it is read less often than the counts: the API counts every task finished in
     * the last hour for it (0.5 s of the server's time with 1,000,000 of them, docs/performance.md).
     */
    const THROUGHPUT_REFRESH_MS = 15000;
    /** Minutes in each queue's throughput chart; the API keeps the last hour. */
    const CHART_MINUTES = 30;
    /** Dead tasks shown, newest first; retrying them brings older ones into view. */
    const DEAD_LIMIT = 50;
    /** Where the API token lives between visits (this browser only). */
    const TOKEN_KEY = 'tasktable.apiToken';
    /** How long the outcome of an action stays in the header. */
    const NOTICE_MS = 8000;
    /** A ready task waiting longer than this hints at too few workers. */
    const LATE_AFTER_S = 60;

    const STATES = [
        ['ready', 'ready', 'Queued and due now'],
        ['scheduled', 'scheduled', 'Queued for later: a retry waiting out its backoff, or a future run_at'],
        ['running', 'running', 'Claimed by a worker'],
        ['succeeded', 'succeeded', 'Finished successfully (until pruned)'],
        ['dead', 'dead', 'Failed for good; retry them below'],
        ['cancelled', 'cancelled', 'Cancelled (until pruned)'],
    ];
    const SVG_NS = 'http://www.w3.org/2000/svg';

    const $ = (id) => document.getElementById(id);
    const cards = new Map();
    const deadRows = new Map();
    let latestRefresh = 0;
    let timer = null;
    /** The chart's minutes as last read, and when (see THROUGHPUT_REFRESH_MS). */
    let chartMinutes = [];
    let throughputAt = -Infinity;
    let failingSince = null;
    let noticeTimer = null;
    let tokenInMemory = '';

    /** An element with attributes (class, text, and plain attributes) and children. */
    function el(tag, attrs = {}, ...children) {
        const node = document.createElement(tag);
        setAttrs(node, attrs);
        node.append(...children);
        return node;
    }

    function svg(tag, attrs = {}, ...children) {
        const node = document.createElementNS(SVG_NS, tag);
        setAttrs(node, attrs);
        node.append(...children);
        return node;
    }

    function setAttrs(node, attrs) {
        for (const [name, value] of Object.entries(attrs)) {
            if (name === 'text') {
                node.textContent = value;
            } else if (name === 'class') {
                node.setAttribute('class', value);
            } else {
                node.setAttribute(name, String(value));
            }
        }
    }

    // --- API -----------------------------------------------------------------------------------------

    class ApiError extends Error {
        constructor(message, status) {
            super(message);
            this.status = status;
        }
    }

    /** localStorage, or when the browser blocks it (private mode) a variable that lasts as long as the page. */
    function token() {
        try {
            return localStorage.getItem(TOKEN_KEY) || '';
        } catch {
            return tokenInMemory;
        }
    }

    function rememberToken(value) {
        try {
            localStorage.setItem(TOKEN_KEY, value);
        } catch {
            tokenInMemory = value;
        }
    }

    function send(method, path, body) {
        const headers = { Accept: 'application/json, application/problem+json' };
        if (body !== undefined) {
            headers['Content-Type'] = 'application/json';
        }
        if (method !== 'GET' && token()) {
            headers.Authorization = 'Bearer ' + token();
        }
        return fetch(path, {
            method,
            headers,
            body: body === undefined ? undefined : JSON.stringify(body),
            cache: 'no-store',
        });
    }

    /** The JSON body of a reply, or an ApiError carrying the problem's detail. */
    async function json(res) {
        const text = await res.text();
        let body = null;
        try {
            body = text ? JSON.parse(text) : null;
        } catch {
            // not JSON: a proxy's error page, reported by status below
        }
        if (!res.ok) {
            const detail = body && (body.detail || body.title);
            throw new ApiError(detail || `HTTP ${res.status}`, res.status);
        }
        return body;
    }

    async function get(path) {
        return json(await send('GET', path));
    }

    /** A state-changing request; on 401 asks for the API token, keeps it and tries again. */
    async function change(method, path, body) {
        for (let tries = 0; tries < 3; tries++) {
            const res = await send(method, path, body);
            if (res.status !== 401) {
                return json(res);
            }
            const asked = window.prompt(tries === 0 && !token()
                ? 'This tasktable server needs its API token (TASKTABLE_API_TOKEN) to make changes:'
                : 'The API token was refused. Enter TASKTABLE_API_TOKEN:');
            if (asked === null || asked.trim() === '') {
                throw new ApiError('the server needs its API token for changes', 401);
            }
            rememberToken(asked.trim());
        }
        throw new ApiError('the API token was refused', 401);
    }

    // --- formatting ------------------------------------------------------------------------------------

    const numberFormat = new Intl.NumberFormat();

    /** "3 s", "2 min", "1 h 5 min", "3 d 4 h". */
    function duration(seconds) {
        const s = Math.max(0, Math.floor(seconds));
        if (s < 60) {
            return `${s} s`;
        }
        if (s < 3600) {
            return `${Math.floor(s / 60)} min`;
        }
        if (s < 86400) {
            const m = Math.floor((s % 3600) / 60);
            return `${Math.floor(s / 3600)} h` + (m ? ` ${m} min` : '');
        }
        const h = Math.floor((s % 86400) / 3600);
        return `${Math.floor(s / 86400)} d` + (h ? ` ${h} h` : '');
    }

    function ago(iso) {
        const seconds = (Date.now() - Date.parse(iso)) / 1000;
        return seconds < 1 ? 'just now' : `${duration(seconds)} ago`;
    }

    function clock(iso) {
        const t = new Date(iso);
        const today = t.toDateString() === new Date().toDateString();
        return today
            ? t.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
            : t.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
    }

    // --- queues ----------------------------------------------------------------------------------------

    function createCard(name) {
        const card = { name, paused: false, counts: new Map() };
        card.title = el('h3', { class: 'card-title', text: name });
        card.badge = el('span', { class: 'badge badge-paused', 'data-testid': 'paused', text: 'paused' });
        card.button = el('button', { type: 'button', class: 'btn', 'data-testid': `pause-${name}` });
        card.button.addEventListener('click', () => togglePause(card));

        const counts = el('dl', { class: 'counts' });
        for (const [state, label, hint] of STATES) {
            const value = el('dd', { 'data-testid': `count-${state}` });
            card.counts.set(state, value);
            counts.append(el('div', { class: `count state-${state}`, title: hint },
                el('dt', {}, el('span', { class: 'dot', 'aria-hidden': 'true' }), label), value));
        }

        card.oldest = el('span', { class: 'oldest-value', 'data-testid': 'oldest-ready' });
        card.totals = el('span', { class: 'chart-totals' });
        card.chartEmpty = el('span', { class: 'chart-empty', text: `nothing finished in the last ${CHART_MINUTES} min` });
        card.chart = svg('svg', {
            class: 'chart', viewBox: `0 0 ${CHART_MINUTES * 10} 40`, preserveAspectRatio: 'none',
            role: 'img', 'data-testid': 'throughput',
        });
        card.root = el('article', { class: 'card', 'data-testid': `queue-${name}` },
            el('header', { class: 'card-head' }, card.title, card.badge, card.button),
            counts,
            el('p', { class: 'oldest' }, el('span', { class: 'muted', text: 'Oldest ready task waiting ' }), card.oldest),
            el('figure', { class: 'throughput' },
                el('figcaption', {},
                    el('span', { class: 'muted', text: `Finished per minute · last ${CHART_MINUTES} min` }),
                    card.totals),
                card.chart,
                card.chartEmpty));
        return card;
    }

    function updateCard(card, queue, minutes, lastMinute) {
        showPaused(card, queue.paused);
        for (const [state] of STATES) {
            const n = queue.counts[state] ?? 0;
            const cell = card.counts.get(state);
            cell.textContent = numberFormat.format(n);
            cell.parentElement.classList.toggle('zero', n === 0);
        }
        const age = queue.oldest_ready_age_s;
        card.oldest.textContent = age === null || age === undefined ? 'none' : duration(age);
        card.oldest.classList.toggle('late', age > LATE_AFTER_S);
        drawChart(card, minutes, lastMinute);
    }

    function showPaused(card, paused) {
        card.paused = paused;
        card.root.classList.toggle('is-paused', paused);
        card.badge.hidden = !paused;
        if (!card.button.disabled) {
            card.button.textContent = paused ? 'Resume' : 'Pause';
        }
        card.button.title = paused
            ? 'Let workers claim tasks from this queue again'
            : 'Stop workers from claiming tasks from this queue; enqueueing still works';
    }

    /** Stacked bars, succeeded below dead, one per minute, the newest on the right. */
    function drawChart(card, minutes, lastMinute) {
        const byMinute = new Map(minutes.map((m) => [Date.parse(m.minute), m]));
        const bars = [];
        let max = 1;
        let succeeded = 0;
        let dead = 0;
        for (let i = 0; i < CHART_MINUTES; i++) {
            const minute = lastMinute - (CHART_MINUTES - 1 - i) * 60000;
            const m = byMinute.get(minute) || { succeeded: 0, dead: 0 };
            bars.push({ minute, ok: m.succeeded, dead: m.dead });
            max = Math.max(max, m.succeeded + m.dead);
            succeeded += m.succeeded;
            dead += m.dead;
        }
        const height = 40;
        const scale = (height - 2) / max;
        // A nonzero count stays visible next to a much taller bar.
        const size = (n) => (n > 0 ? Math.max(2, n * scale) : 0);
        const shapes = [svg('line', { class: 'baseline', x1: 0, x2: CHART_MINUTES * 10, y1: height - 0.5, y2: height - 0.5 })];
        bars.forEach((b, i) => {
            const x = i * 10 + 1.5;
            const okHeight = size(b.ok);
            const deadHeight = size(b.dead);
            const label = `${clock(new Date(b.minute).toISOString())}: ${b.ok} succeeded, ${b.dead} dead`;
            shapes.push(svg('g', {},
                svg('title', { text: label }),
                svg('rect', { class: 'hit', x: i * 10, y: 0, width: 10, height }),
                svg('rect', { class: 'bar-ok', x, y: height - okHeight, width: 7, height: okHeight }),
                svg('rect', { class: 'bar-dead', x, y: height - okHeight - deadHeight, width: 7, height: deadHeight })));
        });
        card.chart.replaceChildren(...shapes);
        card.chartEmpty.hidden = succeeded + dead > 0;
        card.chart.setAttribute('aria-label',
            `${succeeded} succeeded and ${dead} dead in the last ${CHART_MINUTES} minutes`);
        card.totals.replaceChildren(
            el('span', { class: 'legend legend-ok', text: `${numberFormat.format(succeeded)} succeeded` }),
            el('span', { class: 'legend legend-dead', text: `${numberFormat.format(dead)} dead` }));
    }

    function renderQueues(queues, minutes) {
        const container = $('queues');
        const perQueue = new Map();
        let lastMinute = Math.floor(Date.now() / 60000) * 60000;
        for (const m of minutes) {
            if (!perQueue.has(m.queue)) {
                perQueue.set(m.queue, []);
            }
            perQueue.get(m.queue).push(m);
            lastMinute = Math.max(lastMinute, Date.parse(m.minute));
        }
        const seen = new Set();
        queues.forEach((queue, i) => {
            let card = cards.get(queue.name);
            if (!card) {
                card = createCard(queue.name);
                cards.set(queue.name, card);
            }
            updateCard(card, queue, perQueue.get(queue.name) || [], lastMinute);
            if (container.children[i] !== card.root) {
                container.insertBefore(card.root, container.children[i] || null);
            }
            seen.add(queue.name);
        });
        for (const [name, card] of cards) {
            if (!seen.has(name)) {
                card.root.remove();
                cards.delete(name);
            }
        }
    }

    async function togglePause(card) {
        const pausing = !card.paused;
        card.button.disabled = true;
        card.button.textContent = pausing ? 'Pausing…' : 'Resuming…';
        try {
            const queue = await change('PATCH', `api/queues/${encodeURIComponent(card.name)}`, { paused: pausing });
            card.button.disabled = false;
            showPaused(card, queue.paused);
            notice(`Queue ${card.name} ${pausing ? 'paused' : 'resumed'}.`);
        } catch (e) {
            card.button.disabled = false;
            showPaused(card, card.paused);
            notice(`Could not ${pausing ? 'pause' : 'resume'} queue ${card.name}: ${e.message}`, true);
        }
        refresh();
    }

    // --- dead tasks ------------------------------------------------------------------------------------

    function cell(label, attrs = {}, ...children) {
        return el('td', { 'data-label': label, ...attrs }, ...children);
    }

    function createDeadRow(task) {
        const row = { id: task.id };
        row.queue = el('span');
        row.kind = el('code');
        row.attempt = el('span');
        row.finishedAt = el('span', { class: 'when' });
        row.finishedAgo = el('span', { class: 'ago muted' });
        row.error = el('div', { class: 'error', role: 'button', tabindex: 0, 'aria-expanded': 'false' });
        const toggle = () => {
            const open = row.error.classList.toggle('expanded');
            row.error.setAttribute('aria-expanded', String(open));
        };
        row.error.addEventListener('click', toggle);
        row.error.addEventListener('keydown', (e) => {
            if (e.key === 'Enter' || e.key === ' ') {
                e.preventDefault();
                toggle();
            }
        });
        row.button = el('button', { type: 'button', class: 'btn btn-retry', 'data-testid': `retry-${task.id}`, text: 'Retry' });
        row.button.addEventListener('click', () => retry(row));
        row.root = el('tr', { 'data-testid': `dead-${task.id}` },
            cell('ID', { class: 'num id', text: `#${task.id}` }),
            cell('Queue', {}, row.queue),
            cell('Kind', {}, row.kind),
            cell('Attempt', { class: 'num' }, row.attempt),
            cell('Finished', { class: 'finished' }, row.finishedAt, row.finishedAgo),
            cell('Last error', { class: 'error-cell' }, row.error),
            cell('', { class: 'action' }, row.button));
        return row;
    }

    /** queueMaxAttempts: the queue's limit, which applies when the task has none of its own. */
    function updateDeadRow(row, task, queueMaxAttempts) {
        row.queue.textContent = task.queue;
        row.kind.textContent = task.kind;
        const max = task.max_attempts ?? queueMaxAttempts;
        row.attempt.textContent = max ? `${task.attempt} / ${max}` : String(task.attempt);
        row.attempt.title = `attempt ${task.attempt}` + (max ? ` of at most ${max}` : '');
        if (task.finished_at) {
            row.finishedAt.textContent = clock(task.finished_at);
            row.finishedAt.title = new Date(task.finished_at).toLocaleString();
            row.finishedAgo.textContent = ago(task.finished_at);
        }
        const error = task.last_error || '—';
        row.error.textContent = error;
        row.error.title = error.length > 80 ? `${error}\n\n(click to expand)` : error;
    }

    function renderDead(tasks, more, queues) {
        const maxAttempts = new Map(queues.map((q) => [q.name, q.max_attempts]));
        const body = $('dead-rows');
        const seen = new Set();
        tasks.forEach((task, i) => {
            let row = deadRows.get(task.id);
            if (!row) {
                row = createDeadRow(task);
                deadRows.set(task.id, row);
            }
            updateDeadRow(row, task, maxAttempts.get(task.queue));
            if (body.children[i] !== row.root) {
                body.insertBefore(row.root, body.children[i] || null);
            }
            seen.add(task.id);
        });
        for (const [id, row] of deadRows) {
            if (!seen.has(id)) {
                row.root.remove();
                deadRows.delete(id);
            }
        }
        $('dead-empty').hidden = tasks.length > 0;
        document.querySelector('.table-scroll').hidden = tasks.length === 0;
        $('dead-note').textContent = more ? `newest ${DEAD_LIMIT}` : tasks.length ? String(tasks.length) : '';
        document.title = tasks.length ? `tasktable · ${more ? DEAD_LIMIT + '+' : tasks.length} dead` : 'tasktable';
    }

    async function retry(row) {
        row.button.disabled = true;
        row.button.textContent = 'Retrying…';
        try {
            await change('POST', `api/tasks/${encodeURIComponent(row.id)}/retry`);
            notice(`Task #${row.id} is queued again.`);
        } catch (e) {
            notice(`Could not retry task #${row.id}: ${e.message}`, true);
            row.button.disabled = false;
            row.button.textContent = 'Retry';
        }
        refresh();
    }

    // --- refresh loop and status ------------------------------------------------------------------------

    function notice(message, isError = false) {
        const node = $('notice');
        node.textContent = message;
        node.classList.toggle('is-error', isError);
        node.hidden = false;
        clearTimeout(noticeTimer);
        noticeTimer = setTimeout(() => {
            node.hidden = true;
        }, NOTICE_MS);
    }

    function showStatus(error) {
        const status = $('status');
        if (!error) {
            failingSince = null;
            status.textContent = `Live · updated ${clock(new Date().toISOString())}`;
        } else {
            failingSince = failingSince || new Date().toISOString();
            const problem = error instanceof ApiError ? `API error (${error.message})` : 'API unreachable';
            status.textContent = `${problem} since ${clock(failingSince)}, retrying every ${REFRESH_MS / 1000} s`;
        }
        status.classList.toggle('is-error', Boolean(error));
        document.body.classList.toggle('is-stale', Boolean(error));
    }

    /** Loads everything; the newest call wins when calls overlap (a click refreshes at once). */
    async function refresh() {
        clearTimeout(timer);
        const ticket = ++latestRefresh;
        try {
            const stale = Date.now() - throughputAt >= THROUGHPUT_REFRESH_MS;
            const [queues, throughput, dead] = await Promise.all([
                get('api/queues'),
                stale ? get('api/throughput') : Promise.resolve(null),
                get(`api/tasks?state=dead&limit=${DEAD_LIMIT}`),
            ]);
            if (throughput) {
                chartMinutes = throughput.minutes;
                throughputAt = Date.now();
            }
            if (ticket === latestRefresh) {
                renderQueues(queues.queues, chartMinutes);
                renderDead(dead.tasks, dead.next_before !== null, queues.queues);
                showStatus(null);
            }
        } catch (e) {
            if (ticket === latestRefresh) {
                showStatus(e);
            }
        } finally {
            if (ticket === latestRefresh) {
                timer = setTimeout(refresh, REFRESH_MS);
            }
        }
    }

    refresh();
})();
