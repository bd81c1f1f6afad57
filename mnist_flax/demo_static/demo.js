// The drawing page: pointer strokes on a canvas, MNIST preprocessing
// (preprocess.js), and the exported ONNX model run by onnxruntime-web.
// State for tests and curious people: window.demo = {ready, drawn, scored,
// top3}; `scored` catches up with `drawn` once the latest drawing is scored.
(function () {
  'use strict';

  const pad = document.getElementById('pad');
  const ctx = pad.getContext('2d', {willReadFrequently: true});
  const seen = document.getElementById('seen').getContext('2d');
  const list = document.getElementById('top3');
  const status = document.getElementById('status');
  const state = window.demo = {ready: false, drawn: 0, scored: 0, top3: []};
  let session = null, classNames = [], busy = false, last = null;

  function strokeStyle() {
    ctx.strokeStyle = '#fff';
    ctx.lineCap = ctx.lineJoin = 'round';
    ctx.lineWidth = pad.width / 14;  // MNIST's pen: ~2 of 28 pixels.
  }

  function point(e) {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * pad.width / r.width,
            (e.clientY - r.top) * pad.height / r.height];
  }

  pad.addEventListener('pointerdown', (e) => {
    pad.setPointerCapture(e.pointerId);
    last = point(e);
    ctx.beginPath();
    ctx.arc(last[0], last[1], ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fillStyle = '#fff';
    ctx.fill();
    changed();
  });
  pad.addEventListener('pointermove', (e) => {
    if (!last) return;
    const p = point(e);
    ctx.beginPath();
    ctx.moveTo(last[0], last[1]);
    ctx.lineTo(p[0], p[1]);
    ctx.stroke();
    last = p;
    changed();
  });
  for (const name of ['pointerup', 'pointercancel']) {
    pad.addEventListener(name, () => { last = null; });
  }
  document.getElementById('clear').addEventListener('click', () => {
    ctx.clearRect(0, 0, pad.width, pad.height);
    seen.clearRect(0, 0, 28, 28);
    show([]);
    state.drawn++;
    state.scored = state.drawn;
  });

  function changed() {
    state.drawn++;
    if (!busy) requestAnimationFrame(score);
  }

  // One inference at a time; whatever was drawn meanwhile is scored next.
  async function score() {
    if (!session || busy) return;
    busy = true;
    const target = state.drawn;
    try {
      const {data} = ctx.getImageData(0, 0, pad.width, pad.height);
      const ink = new Uint8Array(pad.width * pad.height);
      for (let i = 0; i < ink.length; i++) ink[i] = data[4 * i + 3];  // alpha
      const image = MnistPreprocess.mnistLike(ink, pad.width, pad.height);
      if (image) {
        preview(image);
        const input = new ort.Tensor('uint8', image, [1, 28, 28]);
        const out = await session.run({images: input});
        show(top3(out.probabilities.data));
      } else {
        show([]);
      }
    } catch (err) {
      status.textContent = 'error: ' + err;
    }
    state.scored = target;
    busy = false;
    if (state.drawn !== state.scored) requestAnimationFrame(score);
  }

  function top3(probs) {
    return Array.from(probs, (p, i) => ({name: classNames[i], p}))
        .sort((a, b) => b.p - a.p).slice(0, 3);
  }

  function show(rows) {
    state.top3 = rows;
    list.replaceChildren(...rows.map(({name, p}) => {
      const li = document.createElement('li');
      li.className = 'prediction';
      li.dataset.name = name;
      const label = document.createElement('span');
      label.textContent = name;
      const track = document.createElement('div');
      track.className = 'track';
      const bar = document.createElement('div');
      bar.className = 'bar';
      bar.style.width = (100 * p).toFixed(1) + '%';
      track.append(bar);
      const value = document.createElement('span');
      value.textContent = (100 * p).toFixed(1) + '%';
      li.append(label, track, value);
      return li;
    }));
  }

  function preview(image) {
    const img = seen.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      img.data.fill(image[i], 4 * i, 4 * i + 3);
      img.data[4 * i + 3] = 255;
    }
    seen.putImageData(img, 0, 0);
  }

  async function start() {
    strokeStyle();
    ort.env.wasm.wasmPaths = new URL('static/vendor/', location.href).href;
    ort.env.wasm.numThreads = 1;  // Threads need cross-origin isolation.
    const meta = await (await fetch('model.json')).json();
    classNames = meta.class_names;
    if (!classNames.every((n) => /^\d$/.test(n))) {
      document.getElementById('title').textContent = 'Draw something';
    }
    session = await ort.InferenceSession.create('model.onnx',
                                                {executionProviders: ['wasm']});
    status.textContent = `${meta.source || 'model'}: ${classNames.length} ` +
        'classes, running in your browser';
    state.ready = true;
    if (state.drawn !== state.scored) score();
  }

  start().catch((err) => { status.textContent = 'error: ' + err; });
})();
