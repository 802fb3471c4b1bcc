// rtc-demo page: publish camera + microphone with WHIP, play every other publisher of the
// room with WHEP, show live stats. Plain JS, no build step.
//
// Video is published as 3-layer simulcast (RIDs q, h, f: quarter, half and full
// resolution) unless the page is opened with ?simulcast=0.
//
// Test hooks: window.demoState (a snapshot refreshed every second), window.demoJoin(room)
// and window.demoLeave(). URL parameters: ?room=NAME&autojoin=1&w=1280&h=720&token=T
// &simulcast=0.
'use strict';

(() => {
  const $ = (s) => document.querySelector(s);
  const params = new URLSearchParams(location.search);
  const WIDTH = Number(params.get('w')) || 1280;
  const HEIGHT = Number(params.get('h')) || 720;
  const SIMULCAST = params.get('simulcast') !== '0';
  // The simulcast layers, lowest first (the engine numbers layers in this order).
  const SIMULCAST_ENCODINGS = [
    { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 },
    { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 },
    { rid: 'f', maxBitrate: 1500000 },
  ];

  const app = {
    room: null,
    publishing: false,
    joining: false,
    publisherId: null,
    shard: null,
    location: null,
    pc: null,
    stream: null,
    localTile: null,
    remotes: new Map(), // publisher id -> remote
    timers: [],
    polling: false,
    lastLocal: null,
    sent: [],
    lastShards: null,
    status: 'idle',
    error: null,
  };

  window.demoState = { status: 'idle', publishing: false, remotes: [] };

  // ---- helpers -------------------------------------------------------------------

  function setStatus(text, cls) {
    app.status = text;
    const el = $('#status');
    el.textContent = text;
    el.className = `status ${cls}`;
  }

  function authHeaders() {
    const t = $('#token').value.trim();
    return t ? { Authorization: `Bearer ${t}` } : {};
  }

  // POST the offer of `pc` to `url`; apply the answer. Returns the resource info.
  // The engine is ICE-lite and learns our address from our connectivity checks, so
  // there is no need to wait for candidate gathering (and no trickle).
  async function exchange(url, pc) {
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', ...authHeaders() },
      body: pc.localDescription.sdp,
    });
    const text = await res.text();
    if (res.status !== 201) throw new Error(`${url}: ${res.status} ${text.trim()}`);
    await pc.setRemoteDescription({ type: 'answer', sdp: text });
    return {
      location: res.headers.get('Location'),
      session: Number(res.headers.get('X-Session-Id')),
      shard: Number(res.headers.get('X-Shard')),
    };
  }

  function endResource(location, keepalive) {
    if (!location) return Promise.resolve();
    return fetch(location, { method: 'DELETE', headers: authHeaders(), keepalive })
      .catch(() => {});
  }

  function makeTile(label, local) {
    const node = $('#tile-template').content.firstElementChild.cloneNode(true);
    if (local) node.classList.add('local');
    node.querySelector('.who').textContent = label;
    $('#empty').hidden = true;
    $('#grid').appendChild(node);
    return node;
  }

  function removeTile(tile) {
    if (tile) tile.remove();
    $('#empty').hidden = $('#grid').querySelectorAll('.tile').length > 0;
  }

  function setTileState(tile, state) {
    const el = tile.querySelector('.state');
    el.textContent = state;
    el.className = `state ${state}`;
  }

  const kbps = (bytes, prevBytes, ms) =>
    prevBytes == null || ms <= 0 ? 0 : Math.max(0, Math.round(((bytes - prevBytes) * 8) / ms));

  // ---- publishing (WHIP) ------------------------------------------------------------

  async function join(room) {
    if (app.publishing || app.joining) return;
    room = (room || $('#room').value).trim();
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(room)) {
      setStatus('room names: 1-64 of A-Z a-z 0-9 _ -', 'error');
      return;
    }
    app.joining = true;
    app.error = null;
    app.room = room;
    $('#room').value = room;
    $('#room-name').textContent = room;
    $('#join').disabled = true;
    setStatus('starting camera…', 'busy');
    try {
      app.stream = await navigator.mediaDevices.getUserMedia({
        audio: true,
        video: { width: { ideal: WIDTH }, height: { ideal: HEIGHT }, frameRate: { ideal: 30 } },
      });
      app.localTile = makeTile('You', true);
      const video = app.localTile.querySelector('video');
      video.muted = true;
      video.srcObject = app.stream;

      const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
      app.pc = pc;
      for (const track of app.stream.getTracks()) {
        const init = { direction: 'sendonly', streams: [app.stream] };
        if (SIMULCAST && track.kind === 'video') {
          init.sendEncodings = SIMULCAST_ENCODINGS.map((e) => ({ ...e }));
        }
        pc.addTransceiver(track, init);
      }
      pc.onconnectionstatechange = () => {
        setTileState(app.localTile, pc.connectionState);
        if (pc.connectionState === 'connected') setStatus(`live in ${app.room}`, 'live');
        if (pc.connectionState === 'failed') setStatus('publishing failed', 'error');
      };
      setStatus('publishing…', 'busy');
      const info = await exchange(`/whip/${encodeURIComponent(room)}`, pc);
      app.location = info.location;
      app.publisherId = info.session;
      app.shard = info.shard;
      app.publishing = true;
      app.localTile.querySelector('.who').textContent =
        `You · #${info.session} · shard ${info.shard}`;
      $('#leave').disabled = false;
      const url = new URL(location.href);
      url.searchParams.set('room', room);
      url.searchParams.delete('autojoin');
      history.replaceState(null, '', url);
      app.timers.push(setInterval(poll, 1000), setInterval(updateStats, 1000),
        setInterval(engineStats, 2000));
      poll();
      engineStats();
    } catch (e) {
      app.error = String(e && e.message || e);
      setStatus(app.error, 'error');
      await leave();
    } finally {
      app.joining = false;
      $('#join').disabled = app.publishing;
      publishState();
    }
  }

  async function leave(keepalive = false) {
    for (const t of app.timers) clearInterval(t);
    app.timers = [];
    const ends = [];
    for (const id of [...app.remotes.keys()]) ends.push(unsubscribe(id, keepalive));
    ends.push(endResource(app.location, keepalive));
    app.location = null;
    if (app.pc) app.pc.close();
    app.pc = null;
    if (app.stream) app.stream.getTracks().forEach((t) => t.stop());
    app.stream = null;
    app.sent = [];
    removeTile(app.localTile);
    app.localTile = null;
    app.publishing = false;
    app.publisherId = null;
    $('#leave').disabled = true;
    $('#join').disabled = false;
    $('#publishers').innerHTML = '<li class="muted">none</li>';
    if (!app.error) setStatus('idle', 'idle');
    publishState();
    await Promise.all(ends);
  }

  // ---- viewing (WHEP) ---------------------------------------------------------------

  async function subscribe(p) {
    const remote = {
      id: p.id,
      shard: p.shard,
      viewerShard: null,
      location: null,
      pc: new RTCPeerConnection({ bundlePolicy: 'max-bundle' }),
      tile: makeTile(`#${p.id} · shard ${p.shard}`, false),
      subscribedAt: performance.now(),
      firstFrameMs: null,
      connectedMs: null,
      answeredMs: null,
      firstDecodeMs: null,
      last: null,
      stats: { framesDecoded: 0, audioPackets: 0 },
      closed: false,
    };
    app.remotes.set(p.id, remote);
    const pc = remote.pc;
    const video = remote.tile.querySelector('video');
    remote.video = video;
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    // Video plays muted in the tile; sound goes through its own <audio> element, so a
    // blocked autoplay never stalls the video. The engine's answer carries no msid, so
    // tracks arrive without streams: attach each by kind.
    video.muted = true;
    const audio = new Audio();
    remote.audio = audio;
    pc.ontrack = (e) => {
      if (e.track.kind === 'video') {
        video.srcObject = new MediaStream([e.track]);
        video.play().catch(() => {});
      } else {
        audio.srcObject = new MediaStream([e.track]);
        audio.play().catch(() => {
          // Autoplay with sound needs a user gesture: start on the first click.
          document.addEventListener('click', () => audio.play().catch(() => {}), { once: true });
        });
      }
    };
    pc.onconnectionstatechange = () => {
      setTileState(remote.tile, pc.connectionState);
      if (pc.connectionState === 'connected' && remote.connectedMs == null) {
        remote.connectedMs = Math.round(performance.now() - remote.subscribedAt);
      }
    };
    video.addEventListener('loadeddata', () => {
      if (remote.firstFrameMs == null) {
        remote.firstFrameMs = Math.round(performance.now() - remote.subscribedAt);
        publishState();
      }
    }, { once: true });
    try {
      const info = await exchange(`/whep/${encodeURIComponent(app.room)}/${p.id}`, pc);
      if (remote.closed) {
        endResource(info.location, false);
        return;
      }
      remote.answeredMs = Math.round(performance.now() - remote.subscribedAt);
      watchFirstDecode(remote);
      remote.location = info.location;
      remote.viewerShard = info.shard;
      remote.tile.querySelector('.who').textContent =
        `#${p.id} · shard ${p.shard} → ${info.shard}`;
    } catch (e) {
      console.warn(`subscribe ${p.id}: ${e.message || e}`);
      // Forget it: the next poll retries while the publisher is listed.
      app.remotes.delete(p.id);
      remote.closed = true;
      pc.close();
      removeTile(remote.tile);
    }
  }

  // Time to the first decoded video frame, sampled every 50 ms for up to 10 s.
  async function watchFirstDecode(remote) {
    const end = performance.now() + 10000;
    while (!remote.closed && performance.now() < end) {
      const report = await remote.pc.getStats().catch(() => null);
      let decoded = 0;
      if (report) {
        report.forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video') decoded = s.framesDecoded || 0;
        });
      }
      if (decoded > 0) {
        remote.firstDecodeMs = Math.round(performance.now() - remote.subscribedAt);
        publishState();
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  function unsubscribe(id, keepalive = false) {
    const r = app.remotes.get(id);
    if (!r) return Promise.resolve();
    app.remotes.delete(id);
    r.closed = true;
    r.pc.close();
    r.audio.srcObject = null;
    removeTile(r.tile);
    return endResource(r.location, keepalive);
  }

  async function poll() {
    if (app.polling || !app.room) return;
    app.polling = true;
    try {
      const res = await fetch(`/rooms/${encodeURIComponent(app.room)}`, { cache: 'no-store' });
      const room = res.ok ? await res.json() : { publishers: [], viewers: [] };
      if (!app.publishing) return;
      const listed = new Set(room.publishers.map((p) => p.id));
      for (const p of room.publishers) {
        if (p.id !== app.publisherId && !app.remotes.has(p.id)) subscribe(p);
      }
      for (const id of [...app.remotes.keys()]) {
        if (!listed.has(id)) unsubscribe(id);
      }
      renderRoom(room);
    } catch (e) {
      console.warn(`poll: ${e.message || e}`);
    } finally {
      app.polling = false;
    }
  }

  function renderRoom(room) {
    const ul = $('#publishers');
    ul.innerHTML = '';
    if (room.publishers.length === 0) ul.innerHTML = '<li class="muted">none</li>';
    for (const p of room.publishers) {
      const li = document.createElement('li');
      const me = p.id === app.publisherId ? ' (you)' : '';
      li.innerHTML = `<span><span class="dot${p.connected ? ' on' : ''}"></span>#${p.id}${me}</span>` +
        `<span class="muted">${p.kinds.join('+')} · shard ${p.shard}</span>`;
      ul.appendChild(li);
    }
    $('#viewers').textContent = `${room.viewers.length} WHEP session(s)`;
  }

  // ---- stats ----------------------------------------------------------------------

  async function updateStats() {
    const now = performance.now();
    if (app.pc) {
      // One video outbound-rtp per simulcast layer (a single one without simulcast).
      const layers = [];
      let a = null;
      const report = await app.pc.getStats().catch(() => null);
      if (report) {
        report.forEach((s) => {
          if (s.type !== 'outbound-rtp') return;
          if (s.kind === 'audio') a = s;
          else layers.push(s);
        });
      }
      const order = SIMULCAST_ENCODINGS.map((e) => e.rid);
      layers.sort((x, y) => order.indexOf(x.rid) - order.indexOf(y.rid));
      const prev = app.lastLocal;
      const ms = prev ? now - prev.t : 0;
      const vBytes = layers.reduce((n, s) => n + (s.bytesSent || 0), 0);
      const lines = [];
      for (const v of layers) {
        const rid = v.rid ? `${v.rid} ` : '';
        lines.push(`video ${rid}${v.frameWidth || 0}×${v.frameHeight || 0} · ` +
          `${Math.round(v.framesPerSecond || 0)} fps`);
      }
      if (layers.length > 0) lines.push(`video ${kbps(vBytes, prev && prev.vBytes, ms)} kbps`);
      if (a) lines.push(`audio ${kbps(a.bytesSent, prev && prev.aBytes, ms)} kbps`);
      if (app.localTile) app.localTile.querySelector('.stats').textContent = lines.join('\n');
      app.lastLocal = { t: now, vBytes, aBytes: a && a.bytesSent };
      app.sent = layers.map((v) => ({
        rid: v.rid || null,
        ssrc: v.ssrc,
        width: v.frameWidth || 0,
        height: v.frameHeight || 0,
        framesEncoded: v.framesEncoded || 0,
        bytesSent: v.bytesSent || 0,
        active: v.active !== false,
        limitation: v.qualityLimitationReason || null,
      }));
    }
    for (const r of app.remotes.values()) {
      const report = await r.pc.getStats().catch(() => null);
      if (!report) continue;
      let v = null;
      let a = null;
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') v = s;
        if (s.type === 'inbound-rtp' && s.kind === 'audio') a = s;
      });
      const prev = r.last;
      const ms = prev ? now - prev.t : 0;
      const st = {
        framesDecoded: v ? v.framesDecoded || 0 : 0,
        width: v ? v.frameWidth || 0 : 0,
        height: v ? v.frameHeight || 0 : 0,
        fps: v ? Math.round(v.framesPerSecond || 0) : 0,
        videoKbps: v ? kbps(v.bytesReceived, prev && prev.vBytes, ms) : 0,
        videoLost: v ? v.packetsLost || 0 : 0,
        audioPackets: a ? a.packetsReceived || 0 : 0,
        audioKbps: a ? kbps(a.bytesReceived, prev && prev.aBytes, ms) : 0,
        audioLost: a ? a.packetsLost || 0 : 0,
        audioEnergy: a ? a.totalAudioEnergy || 0 : 0,
      };
      if (st.framesDecoded > 0 && r.firstFrameMs == null) {
        r.firstFrameMs = Math.round(now - r.subscribedAt);
      }
      r.stats = st;
      r.last = { t: now, vBytes: v && v.bytesReceived, aBytes: a && a.bytesReceived };
      r.tile.querySelector('.stats').textContent =
        `video ${st.width}×${st.height} · ${st.fps} fps · ${st.videoKbps} kbps · lost ${st.videoLost}\n` +
        `audio ${st.audioKbps} kbps · ${st.audioPackets} pkts · lost ${st.audioLost}`;
    }
    publishState();
  }

  async function engineStats() {
    try {
      const res = await fetch('/stats', { cache: 'no-store' });
      if (!res.ok) return;
      const s = await res.json();
      const now = performance.now();
      const prev = app.lastShards;
      const tbody = $('#shards tbody');
      tbody.innerHTML = '';
      for (const sh of s.shards) {
        const p = prev && prev.shards.find((x) => x.shard === sh.shard);
        const secs = prev ? (now - prev.t) / 1000 : 0;
        const rate = (a, b) => (p && secs > 0 ? Math.round((a - b) / secs) : '–');
        const tr = document.createElement('tr');
        tr.innerHTML = `<td>${sh.shard}</td><td>${sh.sessions}</td>` +
          `<td>${rate(sh.packets_in, p && p.packets_in)}</td><td>${rate(sh.packets_out, p && p.packets_out)}</td>`;
        tbody.appendChild(tr);
      }
      app.lastShards = { t: now, shards: s.shards };
    } catch (e) {
      console.warn(`stats: ${e.message || e}`);
    }
  }

  function publishState() {
    window.demoState = {
      status: app.status,
      error: app.error,
      room: app.room,
      publishing: app.publishing,
      publisherId: app.publisherId,
      shard: app.shard,
      connection: app.pc ? app.pc.connectionState : 'none',
      simulcast: SIMULCAST,
      // What this page sends: one entry per video outbound-rtp (per simulcast layer).
      sent: app.sent || [],
      remotes: [...app.remotes.values()].map((r) => ({
        id: r.id,
        shard: r.shard,
        viewerShard: r.viewerShard,
        connection: r.pc.connectionState,
        answeredMs: r.answeredMs,
        connectedMs: r.connectedMs,
        firstFrameMs: r.firstFrameMs,
        firstDecodeMs: r.firstDecodeMs,
        // What the tile's <video> element shows.
        rendered: {
          width: r.video.videoWidth,
          height: r.video.videoHeight,
          paused: r.video.paused,
          time: r.video.currentTime,
        },
        ...r.stats,
      })),
    };
  }

  // ---- wiring ---------------------------------------------------------------------

  $('#join-form').addEventListener('submit', (e) => {
    e.preventDefault();
    join();
  });
  $('#leave').addEventListener('click', () => leave());
  window.addEventListener('pagehide', () => {
    if (app.publishing) leave(true);
  });
  window.demoJoin = join;
  window.demoApp = app; // for debugging from the console
  window.demoLeave = () => leave();

  if (params.get('room')) $('#room').value = params.get('room');
  if (params.get('token')) $('#token').value = params.get('token');
  if (params.get('autojoin') === '1') join();
})();
