// voxq web page: submit a job, follow its progress, play and download the audio; or, in live
// mode, hear the text as it is typed. Vanilla JS, talking only to this server's own API
// (/v1/voices, /v1/jobs, the WebSocket /v1/live).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const STORE = { lang: "voxq.lang", key: "voxq.apiKey", history: "voxq.history" };
  const HISTORY_MAX = 20;
  const POLL_MS = 400;
  const FALLBACK = {
    emotions: ["neutral", "happy", "sad", "angry", "calm", "surprised"],
    formats: ["wav", "mp3", "ogg", "opus", "flac", "pcm", "aac", "m4a", "mulaw", "alaw", "mulaw-raw", "alaw-raw"],
  };
  const EXTENSIONS = {
    wav: "wav", mp3: "mp3", ogg: "ogg", opus: "opus", flac: "flac", pcm: "pcm", aac: "aac", m4a: "m4a",
    mulaw: "wav", alaw: "wav", "mulaw-raw": "ulaw", "alaw-raw": "alaw",
  };
  // What an <audio> element can play while the job is still speaking (GET /v1/jobs/{id}/stream).
  const STREAMABLE = ["wav", "mp3", "ogg", "opus", "aac"];
  // Headerless audio a browser cannot play: offered as a download with what it takes to read it.
  const RAW = { pcm: "pcmInfo", "mulaw-raw": "mulawInfo", "alaw-raw": "alawInfo" };
  const FORMAT_LABELS = {
    wav: "WAV", mp3: "MP3", ogg: "Ogg Vorbis", opus: "Opus", flac: "FLAC", pcm: "PCM", aac: "AAC (ADTS)",
    m4a: "AAC (M4A)", mulaw: "G.711 μ-law WAV", alaw: "G.711 A-law WAV", "mulaw-raw": "G.711 μ-law raw",
    "alaw-raw": "G.711 A-law raw",
  };

  const TEXT = {
    zh: {
      pageTitle: "voxq 语音合成", title: "语音合成", apiKey: "API 密钥",
      apiKeyHelp: "服务器启用了 API 密钥时才需要填写；密钥只保存在这个浏览器里。",
      save: "保存", clear: "清除", keySaved: "已保存", keyCleared: "已清除",
      textLabel: "要朗读的文字", textPlaceholder: "在这里输入中文，例如：今天天气很好，我们去公园散步吧。",
      ssmlPlaceholder: "<speak>今天天气很好，<break time=\"500ms\"/>我们去<prosody rate=\"slow\">公园</prosody>散步吧。</speak>",
      ssmlHelp: "SSML 模式：文字须是以 <speak> 开头的 SSML 文档，可用 break（停顿）、prosody（语速、音高、音量）、say-as、phoneme（拼音）、sub 等标签；支持的写法见 API 文档。朗读普通文字请取消勾选。",
      streamingTime: "{time} · 正在生成，总时长待定", playedTime: "{time} / {total}",
      voice: "音色", emotion: "情感", format: "格式", speed: "语速", pitch: "音高", volume: "音量",
      sampleRate: "采样率", nativeRate: "原始（{rate} Hz）", nativeRateUnknown: "原始",
      marks: "同时生成逐字时间标记（JSON）", marksDownload: "时间标记", cancel: "取消",
      pcmInfo: "{rate} Hz · 16 位 · 单声道（小端）", apiDocs: "API 文档",
      mulawInfo: "{rate} Hz · G.711 μ-law · 单声道", alawInfo: "{rate} Hz · G.711 A-law · 单声道",
      loudness: "响度", loudnessDefault: "默认（{lufs} LUFS）", loudnessOff: "关闭（原始音量）",
      submit: "合成语音", hint: "Ctrl + Enter 也可以提交", preview: "预览读音", ssml: "SSML 标记",
      queued: "排队中…", running: "正在合成：第 {done} / {total} 段", starting: "正在合成…",
      succeeded: "合成完成", info: "{duration} 秒 · {format}",
      download: "下载", pcmNote: "PCM 是原始音频数据，浏览器无法直接播放，请下载后使用。",
      history: "最近的合成", historyEmpty: "还没有合成记录。", historyClear: "清空记录",
      play: "播放", remove: "删除", chars: "{n} 字",
      noWorkers: "目前没有在线的合成节点；提交的任务会排队，等节点上线后再合成。",
      footer: "voxq · 自托管中文语音合成", langButton: "English",
      live: "实时朗读", liveStop: "停止朗读",
      liveHelp: "边输入边朗读：写完一句（。！？或换行）就读出来，停顿片刻时也读出还没写完的部分。打开前框里已有的文字不读；改动读过的文字时，从改动的那一句重新读。按 Esc 或“停止朗读”立即停下。",
      liveConnecting: "正在连接…", liveReady: "请输入文字，写完一句就会读出来。", liveSpeaking: "正在朗读…",
      liveStopped: "已停止；继续输入会接着朗读。", liveClosed: "连接已断开；继续输入会重新连接。",
      sources: { dictionary: "字典读音", word: "词语读音", sandhi: "变调", lexicon: "发音词典", ssml: "SSML 指定" },
      statuses: { queued: "排队中", running: "合成中", succeeded: "已完成", failed: "失败", canceled: "已取消", expired: "已过期" },
      emotions: { neutral: "中性", happy: "开心", sad: "悲伤", angry: "生气", calm: "平静", surprised: "惊讶" },
    },
    en: {
      pageTitle: "voxq text to speech", title: "Text to speech", apiKey: "API key",
      apiKeyHelp: "Only needed when the server has API keys enabled; the key is kept in this browser only.",
      save: "Save", clear: "Clear", keySaved: "Saved", keyCleared: "Cleared",
      textLabel: "Text to speak", textPlaceholder: "Type Chinese text here, e.g. 今天天气很好，我们去公园散步吧。",
      ssmlPlaceholder: "<speak>今天天气很好，<break time=\"500ms\"/>我们去<prosody rate=\"slow\">公园</prosody>散步吧。</speak>",
      ssmlHelp: "SSML mode: the text must be an SSML document starting with <speak>; break (pauses), prosody (rate, pitch, volume), say-as, phoneme (pinyin) and sub work; the API docs list what is supported. Untick it to speak plain text.",
      streamingTime: "{time} · still being made, total not known yet", playedTime: "{time} / {total}",
      voice: "Voice", emotion: "Emotion", format: "Format", speed: "Speed", pitch: "Pitch", volume: "Volume",
      sampleRate: "Sample rate", nativeRate: "Native ({rate} Hz)", nativeRateUnknown: "Native",
      marks: "Also make per-character timing marks (JSON)", marksDownload: "Timing marks", cancel: "Cancel",
      pcmInfo: "{rate} Hz · 16-bit · mono (little-endian)", apiDocs: "API docs",
      mulawInfo: "{rate} Hz · G.711 μ-law · mono", alawInfo: "{rate} Hz · G.711 A-law · mono",
      loudness: "Loudness", loudnessDefault: "Default ({lufs} LUFS)", loudnessOff: "Off (the voice's own level)",
      submit: "Synthesize", hint: "Ctrl + Enter submits too", preview: "Preview reading", ssml: "SSML markup",
      queued: "Queued…", running: "Synthesizing: segment {done} of {total}", starting: "Synthesizing…",
      succeeded: "Done", info: "{duration} s · {format}",
      download: "Download", pcmNote: "PCM is raw audio that browsers cannot play: download it instead.",
      history: "Recent syntheses", historyEmpty: "Nothing synthesized yet.", historyClear: "Clear history",
      play: "Play", remove: "Remove", chars: "{n} chars",
      noWorkers: "No synthesis worker is online right now; jobs will wait in the queue until one is.",
      footer: "voxq · self-hosted Chinese text to speech", langButton: "中文",
      live: "Live", liveStop: "Stop",
      liveHelp: "Spoken as you type: each sentence as soon as it ends (。！？ or a new line), and what is not finished yet once you pause. Text already in the box is not read; an edit to text already read is read again from the start of its sentence. Esc or “Stop” silences it at once.",
      liveConnecting: "Connecting…", liveReady: "Type: each sentence is spoken as soon as it ends.", liveSpeaking: "Speaking…",
      liveStopped: "Stopped; type on to continue.", liveClosed: "Disconnected; type on to reconnect.",
      sources: { dictionary: "dictionary", word: "word", sandhi: "tone sandhi", lexicon: "lexicon", ssml: "SSML" },
      statuses: { queued: "Queued", running: "Running", succeeded: "Done", failed: "Failed", canceled: "Canceled", expired: "Expired" },
      emotions: { neutral: "neutral", happy: "happy", sad: "sad", angry: "angry", calm: "calm", surprised: "surprised" },
    },
  };

  // The engines describe their voices in English (GET /v1/voices); the voices this page knows are
  // described in the page's language, the licence note included. Others show the engine's words.
  const VOICE_NOTES = {
    zh: { baker: "标贝中文普通话女声（训练语料仅限非商业用途）" },
    en: { baker: "Baker corpus Mandarin female voice (non-commercial use only)" },
  };

  // API error codes (and job error codes) in words a person understands.
  const ERRORS = {
    zh: {
      empty_text: "请先输入要朗读的文字。",
      nothing_to_say: "这段文字里没有可以朗读的字符，请输入中文文字。",
      text_too_long: "文字太长了：最多 {max} 字，请缩短后再试。",
      unknown_emotion: "服务器不支持所选的情感，请换一个。",
      unknown_voice: "服务器不支持所选的音色，请换一个。",
      unsupported_sample_rate: "所选格式不支持这个采样率。",
      invalid_request: "有一项设置不正确（{field}），请检查后再试。",
      invalid_json: "请求格式有误，请刷新页面后重试。",
      unsupported_media_type: "请求格式有误，请刷新页面后重试。",
      payload_too_large: "内容太大，请缩短文字后再试。",
      unauthorized: "需要有效的 API 密钥：请点右上角的“API 密钥”填写。",
      rate_limited: "请求太频繁了，请 {retry} 秒后再试。",
      chars_per_day_exceeded: "这个密钥今天的字数额度已用完，请明天再试。",
      unavailable: "服务暂时不可用，请稍后再试。",
      no_workers: "目前没有在线的合成节点，请稍后再试。",
      not_found: "找不到这个任务：它可能已过期或被删除。",
      not_ready: "音频还没有准备好。",
      worker_lost: "合成节点多次中断，任务失败了，请重新提交。",
      text_expired: "任务的文字已过期，请重新提交。",
      canceled: "任务已被取消。",
      internal_error: "服务器出了点问题，请稍后再试。",
      network: "无法连接到服务器，请检查网络后重试。",
      not_ssml: "勾选了“SSML 标记”，但这段文字不是 SSML 文档（SSML 以 <speak> 开头）。朗读普通文字请取消勾选。",
      malformed_ssml: "SSML 不是格式正确的 XML{where}：请检查标签是否成对、引号是否完整。",
      unsupported_element: "不支持 SSML 元素 <{element}>{where}。支持的元素：{supported}。",
      unsupported_attribute: "SSML 元素 <{element}> 不支持属性 {attribute}{where}。",
      invalid_ssml: "SSML 文档有误{where}，请对照 API 文档检查这一处。",
      forbidden_xml: "出于安全原因，SSML 里不能声明实体、文档类型或引用外部内容{where}。",
      live_too_long: "这次实时朗读已读满 {max} 字的上限，后面的文字没有读；继续输入会开始新的一次。",
      session_too_long: "这次实时朗读已达到最长时间；继续输入会开始新的一次。",
      too_many_sessions: "同时进行的实时朗读太多了，请稍后再试。",
      slow_reader: "网络太慢，音频来不及送到，实时朗读中断了；继续输入会重新连接。",
      job_lost: "有一句没能合成出来，请重新输入这一句。",
      live_closed: "实时朗读的连接断开了；继续输入会重新连接。",
      where: "（第 {line} 行，第 {column} 列）",
      generic: "出错了（{code}）：{message}",
    },
    en: {
      empty_text: "Please type some text to speak first.",
      nothing_to_say: "There is nothing speakable in this text; please type Chinese text.",
      text_too_long: "The text is too long: at most {max} characters. Please shorten it.",
      unknown_emotion: "The server does not offer this emotion; please pick another.",
      unknown_voice: "The server does not offer this voice; please pick another.",
      unsupported_sample_rate: "This format does not support that sample rate.",
      invalid_request: "One of the settings is not valid ({field}); please check it.",
      invalid_json: "The request was malformed; please reload the page and try again.",
      unsupported_media_type: "The request was malformed; please reload the page and try again.",
      payload_too_large: "That is too much text at once; please shorten it.",
      unauthorized: "A valid API key is needed: enter it under “API key” at the top right.",
      rate_limited: "Too many requests; please try again in {retry} s.",
      chars_per_day_exceeded: "This key has used up today's characters; please try again tomorrow.",
      unavailable: "The service is unavailable right now; please try again shortly.",
      no_workers: "No synthesis worker is online; please try again shortly.",
      not_found: "This job no longer exists: it expired or was deleted.",
      not_ready: "The audio is not ready yet.",
      worker_lost: "The workers were interrupted several times and the job failed; please submit it again.",
      text_expired: "The job's text has expired; please submit it again.",
      canceled: "The job was canceled.",
      internal_error: "Something went wrong on the server; please try again later.",
      network: "Cannot reach the server; check the connection and try again.",
      not_ssml: "“SSML markup” is ticked, but this text is no SSML document (SSML starts with <speak>). Untick it to speak plain text.",
      malformed_ssml: "The SSML is not well-formed XML{where}: check that every tag is closed and every quote ends.",
      unsupported_element: "The SSML element <{element}> is not supported{where}. Supported: {supported}.",
      unsupported_attribute: "The SSML element <{element}> takes no attribute {attribute}{where}.",
      invalid_ssml: "The SSML is not valid{where}: {detail}",
      forbidden_xml: "For safety, SSML may not declare entities or a document type, or refer to anything outside it{where}.",
      live_too_long: "This live session has read its limit of {max} characters; the rest was not read. Type on to start a new one.",
      session_too_long: "This live session has run as long as one may; type on to start a new one.",
      too_many_sessions: "Too many live sessions are open; please try again shortly.",
      slow_reader: "The connection is too slow for the audio, so live reading stopped; type on to reconnect.",
      job_lost: "One sentence could not be synthesized; please type it again.",
      live_closed: "The live connection was lost; type on to reconnect.",
      where: " (line {line}, column {column})",
      generic: "Something went wrong ({code}): {message}",
    },
  };

  const state = {
    lang: "zh",
    caps: null,
    maxChars: null,
    generation: 0,
    lastError: null,
    lastStatus: null,
    current: null,
    streaming: null, // the job whose stream is playing
    blobUrls: {},
  };

  // localStorage can be missing or full (private windows): the page works without it.
  const storage = {
    get(name, fallback = null) {
      try { const v = window.localStorage.getItem(name); return v === null ? fallback : v; } catch { return fallback; }
    },
    set(name, value) { try { window.localStorage.setItem(name, value); } catch { /* not kept */ } },
    remove(name) { try { window.localStorage.removeItem(name); } catch { /* nothing to do */ } },
  };

  const fill = (template, vars = {}) => template.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : ""));
  const t = (key, vars) => fill(TEXT[state.lang][key] ?? TEXT.zh[key] ?? key, vars);
  // Code points without the trailing whitespace, as the server counts (shared/text/frontend.py trim).
  const chars = (text) => Array.from(text.trimEnd()).length;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  const TEXT_ERRORS = new Set(["empty_text", "nothing_to_say", "text_too_long", "payload_too_large"]);

  class ApiFailure extends Error {
    constructor(status, code, message, field = null, retry = null) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field;
      this.retry = retry;
    }
  }

  async function api(path, { method = "GET", body } = {}) {
    const headers = { Accept: "application/json" };
    const key = storage.get(STORE.key);
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiFailure(0, "network", String(err));
    }
    let data = null;
    if ((response.headers.get("Content-Type") || "").includes("json")) {
      try { data = await response.json(); } catch { data = null; }
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiFailure(response.status, error.code || `http_${response.status}`,
        error.message || response.statusText, error.field || null, response.headers.get("Retry-After"));
    }
    return data;
  }

  // ---- messages -------------------------------------------------------------------------------
  const SSML_CODES = new Set(["malformed_ssml", "unsupported_ssml", "invalid_ssml", "forbidden_xml"]);

  // The API's SSML errors are English sentences with a line and column: said in the page's own
  // language here, from the parts a person needs (where, and which element or attribute).
  function explainSsml(failure, table) {
    const detail = failure.message.replace(/\s*\(line \d+, column \d+\)\s*$/, "");
    const at = /\(line (\d+), column (\d+)\)/.exec(failure.message);
    const where = at ? fill(table.where, { line: at[1], column: at[2] }) : "";
    if (failure.code === "malformed_ssml" && failure.notSsml) return table.not_ssml;
    if (failure.code === "unsupported_ssml") {
      let m = /^<([^>]+)> is not supported; supported elements: (.+)$/.exec(detail);
      if (m) return fill(table.unsupported_element, { element: m[1], supported: m[2], where });
      m = /^<([^>]+)> has no attribute '([^']+)'/.exec(detail);
      if (m) return fill(table.unsupported_attribute, { element: m[1], attribute: m[2], where });
      return fill(table.invalid_ssml, { where, detail });
    }
    return fill(table[failure.code], { where, detail });
  }

  function explain(failure) {
    const table = ERRORS[state.lang];
    if (SSML_CODES.has(failure.code)) return explainSsml(failure, table);
    let template = table[failure.code];
    if (!template) {
      if (failure.status === 401) template = table.unauthorized;
      else if (failure.status === 429) template = table.rate_limited;
      else if (failure.status >= 500) template = table.unavailable;
      else template = table.generic;
    }
    return fill(template, {
      code: failure.code, message: failure.message, field: failure.field || "?",
      retry: failure.retry || "60", max: failure.max ?? state.maxChars ?? "—",
    });
  }

  function showError(failure) {
    state.lastError = failure;
    const box = $("error");
    box.textContent = explain(failure);
    box.hidden = false;
  }

  function clearError() {
    state.lastError = null;
    $("error").hidden = true;
    $("error").textContent = "";
  }

  // ---- language -------------------------------------------------------------------------------
  function applyLanguage() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.title = t("pageTitle");
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
      el.placeholder = t(el.dataset.i18nPlaceholder);
    });
    $("lang-toggle").textContent = t("langButton");
    $("lang-toggle").lang = state.lang === "zh" ? "en" : "zh-CN";
    renderEmotions();
    renderVoiceNote();
    renderRates();
    renderCounter();
    renderHistory();
    renderSsmlHelp();
    if (state.lastStatus) renderStatus(state.lastStatus);
    if (state.lastError) showError(state.lastError);
    if (!$("notice").hidden) $("notice").textContent = t("noWorkers");
    renderLive();
  }

  // ---- menus ------------------------------------------------------------------------------------
  function option(value, label) {
    const el = document.createElement("option");
    el.value = value;
    el.textContent = label;
    return el;
  }

  function renderEmotions() {
    const select = $("emotion");
    const chosen = select.value || "neutral";
    const emotions = (state.caps && state.caps.emotions.length) ? state.caps.emotions : FALLBACK.emotions;
    select.replaceChildren(...emotions.map((e) => option(e, TEXT[state.lang].emotions[e] || e)));
    select.value = emotions.includes(chosen) ? chosen : emotions[0];
  }

  // The menu shows voice names only; the chosen voice's whole description (its licence note
  // included) is a line of its own below, never cut off by the width of a <select>.
  function renderVoiceNote() {
    const voices = state.caps ? state.caps.voices : [];
    const voice = voices.find((v) => v.name === $("voice").value);
    const note = voice && (VOICE_NOTES[state.lang][voice.name] || voice.description);
    $("voice-note").textContent = note ? `${voice.name}${state.lang === "zh" ? "：" : ": "}${note}` : "";
  }

  // With SSML ticked the box says what it takes: the example is a document, and a line says how.
  function renderSsmlHelp() {
    const ssml = $("ssml").checked;
    $("text").placeholder = t(ssml ? "ssmlPlaceholder" : "textPlaceholder");
    $("ssml-help").textContent = ssml ? t("ssmlHelp") : "";
    $("ssml-help").hidden = !ssml;
  }

  function renderRates() {
    const select = $("sample-rate");
    const caps = state.caps;
    const chosen = select.value;
    const native = caps && caps.native_sample_rate;
    const rates = (caps && caps.sample_rates) || [];
    const format = $("format").value;
    // Opus encodes only at some rates and G.711 only at 8000: offer just those, so the choice can
    // never be refused.
    const perFormat = caps && caps.format_sample_rates && caps.format_sample_rates[format];
    const allowed = perFormat || (format === "opus" && caps && caps.opus_sample_rates ? caps.opus_sample_rates : rates);
    // "Native" only where the format can carry the engine's rate (not G.711's 8 kHz alone).
    const nativeFits = !perFormat || !native || perFormat.includes(native);
    select.replaceChildren(
      ...(nativeFits ? [option("", native ? t("nativeRate", { rate: native }) : t("nativeRateUnknown"))] : []),
      ...allowed.map((r) => option(String(r), `${r} Hz`)),
    );
    select.value = allowed.map(String).includes(chosen) ? chosen : (nativeFits ? "" : String(allowed[0]));
    renderLoudness();
  }

  function renderLoudness() {
    // The default follows the format (hotter for the telephone): the menu says which it is.
    const select = $("loudness");
    const chosen = select.value;
    const caps = state.caps;
    const defaults = caps && caps.default_loudness_lufs;
    const lufs = defaults && defaults[$("format").value];
    select.replaceChildren(
      option("", lufs !== undefined ? t("loudnessDefault", { lufs }) : t("loudnessDefault", { lufs: "…" })),
      ...["-14", "-16", "-20", "-23"].map((v) => option(v, `${v} LUFS`)),
      option("off", t("loudnessOff")),
    );
    select.value = chosen;
    if (select.value !== chosen) select.value = "";
  }

  function renderMenus() {
    const caps = state.caps;
    const voices = caps ? caps.voices : [];
    const chosenVoice = $("voice").value;
    $("voice").replaceChildren(...(voices.length
      ? voices.map((v) => option(v.name, v.name))
      : [option("", "—")]));
    if (voices.some((v) => v.name === chosenVoice)) $("voice").value = chosenVoice;
    renderVoiceNote();
    renderEmotions();
    const formats = caps ? caps.formats : FALLBACK.formats;
    const chosen = $("format").value || "wav";
    $("format").replaceChildren(...formats.map((f) => option(f, FORMAT_LABELS[f] || f)));
    $("format").value = formats.includes(chosen) ? chosen : formats[0];
    renderRates();
    const limits = caps && caps.limits;
    if (limits) {
      for (const name of ["speed", "pitch", "volume"]) {
        if (Array.isArray(limits[name])) {
          $(name).min = limits[name][0];
          $(name).max = limits[name][1];
        }
      }
    }
  }

  async function loadVoices() {
    try {
      const data = await api("/v1/voices");
      const engines = data.engines || [];
      state.caps = engines.find((e) => e.engine === data.default_engine) || engines[0] || null;
      state.maxChars = state.caps ? state.caps.limits.max_chars : null;
      $("notice").hidden = Boolean(state.caps);
      $("notice").textContent = t("noWorkers");
      if (state.lastError && state.lastError.status === 401) clearError();
    } catch (failure) {
      state.caps = null;
      showError(failure);
    }
    renderMenus();
    renderCounter();
    document.body.dataset.ready = "true";
  }

  function renderCounter() {
    const n = chars($("text").value);
    const counter = $("counter");
    counter.textContent = `${n} / ${state.maxChars ?? "—"}`;
    counter.classList.toggle("over", state.maxChars !== null && n > state.maxChars);
  }

  function renderSlider(name) {
    $(`${name}-value`).textContent = `${Number($(name).value).toFixed(2)}×`;
  }

  // ---- a job ------------------------------------------------------------------------------------
  function renderStatus(job) {
    state.lastStatus = job;
    const progress = $("progress");
    const { segments_done: done = 0, segments_total: total = null } = job.progress || {};
    let line;
    if (job.status === "queued") {
      line = t("queued");
    } else if (job.status === "running") {
      line = total ? t("running", { done, total }) : t("starting");
    } else if (job.status === "succeeded") {
      line = t("succeeded");
    } else {
      line = TEXT[state.lang].statuses[job.status] || job.status;
    }
    $("status-line").textContent = line;
    const active = job.status === "queued" || job.status === "running";
    $("cancel").hidden = !active || !state.current;
    // An indeterminate <progress> animates forever: a job that failed or was canceled shows none.
    progress.hidden = !active && job.status !== "succeeded";
    $("result").dataset.status = job.status;
    // A failed or canceled job has no audio: no empty player, no download that leads nowhere.
    if (job.status === "failed" || job.status === "canceled") clearPlayer();
    if (job.status === "succeeded") {
      progress.max = 1;
      progress.value = 1;
    } else if (total) {
      progress.max = total;
      progress.value = done;
    } else {
      progress.removeAttribute("value"); // indeterminate until the job knows its segments
    }
    const result = job.result;
    $("result-info").textContent = result
      ? t("info", { duration: result.duration_s.toFixed(1), format: FORMAT_LABELS[result.format] || result.format })
      : "";
  }

  async function audioUrl(url, slot = "audio") {
    // An <audio> element cannot send an Authorization header: with a key, fetch the file first.
    if (!storage.get(STORE.key)) return url;
    const response = await fetch(url, { headers: { Authorization: `Bearer ${storage.get(STORE.key)}` } });
    if (!response.ok) {
      let error = {};
      try { error = (await response.json()).error || {}; } catch { /* not JSON */ }
      throw new ApiFailure(response.status, error.code || `http_${response.status}`, error.message || "");
    }
    if (state.blobUrls[slot]) URL.revokeObjectURL(state.blobUrls[slot]);
    state.blobUrls[slot] = URL.createObjectURL(await response.blob());
    return state.blobUrls[slot];
  }

  async function showResult(job, autoplay) {
    const result = job.result;
    const url = await audioUrl(result.audio_url);
    const player = $("player");
    const download = $("download");
    download.href = url;
    download.hidden = false;
    download.download = `voxq-${job.id.slice(0, 8)}.${EXTENSIONS[result.format] || result.format}`;
    const playable = !(result.format in RAW);
    $("pcm-note").hidden = playable;
    // Raw audio has no header: what it takes to read the file is shown beside the download.
    $("pcm-info").hidden = playable;
    $("pcm-info").textContent = playable ? "" : t(RAW[result.format], { rate: result.sample_rate });
    const marks = $("marks-link");
    marks.hidden = !result.marks_url;
    if (result.marks_url) {
      marks.href = await audioUrl(result.marks_url, "marks");
      marks.download = `voxq-${job.id.slice(0, 8)}-marks.json`;
    }
    player.hidden = !playable;
    if (playable && state.streaming === job.id) {
      // Playing the stream: its length is known now. The player moves to the finished file (whose
      // length, and seeking, the browser knows) when it pauses or ends, never in mid-sentence.
      state.streamTotal = result.duration_s;
      renderPlayerTime();
      const swap = () => {
        if (state.streaming !== job.id) return;
        const at = player.ended ? 0 : player.currentTime;
        endStreaming();
        player.addEventListener("loadedmetadata", () => { player.currentTime = Math.min(at, player.duration); },
          { once: true });
        player.src = url;
        player.load();
      };
      if (player.paused || player.ended) swap();
      else {
        player.addEventListener("pause", swap, { once: true });
        player.addEventListener("ended", swap, { once: true });
      }
    } else if (playable) {
      player.src = url;
      player.load();
      if (autoplay) player.play().catch(() => { /* the browser wants a click first */ });
    } else {
      player.removeAttribute("src");
    }
    $("player-box").hidden = false;
    // On a phone the player is below the form: bring it into view.
    $("player-box").scrollIntoView({ block: "nearest" });
  }

  async function follow(id, generation, autoplay) {
    state.current = id;
    let lastStatus = null;
    while (generation === state.generation) {
      let job;
      try {
        job = await api(`/v1/jobs/${id}`);
      } catch (failure) {
        if (generation !== state.generation) return;
        if (failure.status === 404) updateHistory(id, { status: "expired" });
        showError(failure);
        return;
      }
      if (generation !== state.generation) return;
      renderStatus(job);
      // Asking for speech is asking to hear it: play while it is being made.
      if (job.status === "running" && state.streaming !== id) startStream(job);
      if (job.status !== lastStatus) {
        lastStatus = job.status;
        if (job.status === "queued" || job.status === "running") updateHistory(id, { status: job.status });
      }
      if (job.status === "succeeded") {
        updateHistory(id, { status: job.status, duration: job.result.duration_s });
        try {
          await showResult(job, autoplay);
        } catch (failure) {
          showError(failure);
        }
        return;
      }
      if (job.status === "failed" || job.status === "canceled") {
        updateHistory(id, { status: job.status });
        const error = job.error || { code: job.status, message: job.status };
        showError(new ApiFailure(200, error.code, error.message));
        // The message appeared above the result and pushed it down: keep the outcome in view.
        $("result").scrollIntoView({ block: "nearest" });
        return;
      }
      await sleep(POLL_MS);
    }
  }

  function startStream(job) {
    // Play while the job is still speaking: the stream sends each chunk as it lands. An <audio>
    // element cannot send an Authorization header, so with a key the page plays the finished file.
    if (storage.get(STORE.key) || !STREAMABLE.includes(job.options.format)) return;
    state.streaming = job.id;
    state.streamTotal = null;
    const player = $("player");
    // A stream of unknown length: the browser's clock would show a guess (MP3: the bytes so far)
    // or nothing (WAV), so its own time and timeline are hidden and the page says what it knows.
    player.classList.add("streaming");
    player.src = `/v1/jobs/${job.id}/stream`;
    player.hidden = false;
    $("download").hidden = true; // until the file exists
    $("player-box").hidden = false;
    renderPlayerTime();
    player.play().catch(() => { /* the browser wants a click first */ });
  }

  function endStreaming() {
    state.streaming = null;
    state.streamTotal = null;
    $("player").classList.remove("streaming");
    renderPlayerTime();
  }

  const clock = (seconds) => {
    const s = Math.max(0, Math.floor(seconds || 0));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  };

  function renderPlayerTime() {
    const player = $("player");
    const shown = $("player-time");
    shown.hidden = !state.streaming;
    if (!state.streaming) return;
    const time = clock(player.currentTime);
    shown.textContent = state.streamTotal === null
      ? t("streamingTime", { time }) : t("playedTime", { time, total: clock(state.streamTotal) });
  }

  // No audio on screen: for a job that has none (failed, canceled) and before another one.
  function clearPlayer() {
    const player = $("player");
    player.pause();
    if (player.hasAttribute("src")) {
      player.removeAttribute("src");
      player.load(); // lets go of the stream's connection and what it buffered
    }
    endStreaming();
    $("player-box").hidden = true;
    $("download").removeAttribute("href");
    $("marks-link").removeAttribute("href");
    $("marks-link").hidden = true;
    $("pcm-note").hidden = true;
    $("pcm-info").hidden = true;
  }

  // Nothing of an earlier job stays on screen: its card, its player, its preview.
  function forgetJob() {
    state.generation += 1;
    state.current = null;
    state.lastStatus = null;
    clearPlayer();
    $("result").hidden = true;
    $("preview").hidden = true;
  }

  function startWatching() {
    state.generation += 1;
    state.current = null;
    clearError();
    clearPlayer();
    $("result").hidden = false;
    // On a phone the result is below the fold: bring the progress into view.
    $("result").scrollIntoView({ block: "nearest" });
    return state.generation;
  }

  async function cancel() {
    const id = state.current;
    const status = state.lastStatus && state.lastStatus.status;
    // Only while it can still be canceled: DELETE on a finished job deletes its audio.
    if (!id || (status !== "queued" && status !== "running")) return;
    $("cancel").disabled = true;
    try {
      const job = await api(`/v1/jobs/${id}`, { method: "DELETE" });
      if (job && job.status) renderStatus(job);
    } catch (failure) {
      showError(failure);
    } finally {
      $("cancel").disabled = false;
    }
  }

  async function submit(event) {
    event.preventDefault();
    const button = $("submit");
    if (button.disabled) return;
    const text = $("text").value;
    const body = {
      text,
      emotion: $("emotion").value || "neutral",
      speed: Number($("speed").value),
      pitch: Number($("pitch").value),
      volume: Number($("volume").value),
      format: $("format").value || "wav",
      marks: $("marks").checked,
    };
    if ($("voice").value) body.voice = $("voice").value;
    if ($("sample-rate").value) body.sample_rate = Number($("sample-rate").value);
    const loudness = $("loudness").value;
    if (loudness) body.loudness = loudness === "off" ? "off" : Number(loudness);
    if ($("ssml").checked) body.text_type = "ssml";
    clearError();
    $("preview").hidden = true; // the reading of another text, maybe
    button.disabled = true;
    let accepted;
    try {
      accepted = await api("/v1/jobs", { method: "POST", body });
    } catch (failure) {
      button.disabled = false;
      forgetJob();
      showError(sentAsSsml(failure, body));
      // A disabled button drops the focus to <body>: put it back where the problem can be fixed.
      (failure.field === "text" || TEXT_ERRORS.has(failure.code) ? $("text") : button).focus();
      return;
    }
    button.disabled = false;
    addHistory({
      id: accepted.id, at: Date.now(), snippet: Array.from(spokenText(text, body.text_type)).slice(0, 60).join(""),
      chars: chars(text), format: body.format, emotion: body.emotion, status: accepted.status,
      ssml: body.text_type === "ssml",
    });
    const generation = startWatching();
    state.current = accepted.id;
    renderStatus({ status: accepted.status, progress: {} });
    // Keyboard and screen-reader users land on the job's status, not on <body>.
    $("status-line").focus({ preventScroll: true });
    await follow(accepted.id, generation, false);
  }

  // A plain text sent with SSML ticked: said as such, not as the XML parser's complaint.
  function sentAsSsml(failure, body) {
    if (failure.code === "malformed_ssml" && body.text_type === "ssml" && !body.text.trim().startsWith("<")) {
      failure.notSsml = true;
    }
    return failure;
  }

  // What an SSML document says, for the history: its text without the markup.
  function spokenText(text, textType) {
    if (textType !== "ssml") return text.trim();
    const doc = new DOMParser().parseFromString(text, "application/xml");
    if (doc.getElementsByTagName("parsererror").length) return text.trim();
    return doc.documentElement.textContent.replace(/\s+/g, " ").trim();
  }

  // ---- history ----------------------------------------------------------------------------------
  function loadHistory() {
    try {
      const items = JSON.parse(storage.get(STORE.history, "[]"));
      return Array.isArray(items) ? items.filter((i) => i && typeof i.id === "string") : [];
    } catch {
      return [];
    }
  }

  function saveHistory(items) {
    storage.set(STORE.history, JSON.stringify(items.slice(0, HISTORY_MAX)));
    renderHistory();
  }

  function addHistory(item) {
    saveHistory([item, ...loadHistory().filter((i) => i.id !== item.id)]);
  }

  function updateHistory(id, changes) {
    saveHistory(loadHistory().map((i) => (i.id === id ? { ...i, ...changes } : i)));
  }

  function renderHistory() {
    const items = loadHistory();
    const list = $("history");
    $("history-empty").hidden = items.length > 0;
    $("history-clear").hidden = items.length === 0;
    const when = new Intl.DateTimeFormat(state.lang === "zh" ? "zh-CN" : "en", {
      month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    });
    list.replaceChildren(...items.map((item) => {
      const li = document.createElement("li");
      li.dataset.id = item.id;
      const snippet = document.createElement("div");
      snippet.className = "snippet";
      snippet.textContent = item.snippet || "—";
      snippet.title = item.snippet || "";
      const meta = document.createElement("div");
      meta.className = "meta";
      const badge = document.createElement("span");
      badge.className = `badge ${item.status || ""}`;
      badge.textContent = TEXT[state.lang].statuses[item.status] || item.status || "";
      const details = [
        when.format(new Date(item.at || Date.now())),
        t("chars", { n: item.chars ?? "?" }),
        TEXT[state.lang].emotions[item.emotion] || item.emotion,
        FORMAT_LABELS[item.format] || item.format,
      ];
      if (typeof item.duration === "number") details.push(`${item.duration.toFixed(1)} s`);
      meta.append(badge);
      if (item.ssml) {
        const kind = document.createElement("span");
        kind.className = "badge kind";
        kind.textContent = "SSML";
        meta.append(" ", kind);
      }
      meta.append(` ${details.join(" · ")}`);
      const buttons = document.createElement("div");
      buttons.className = "buttons";
      const play = document.createElement("button");
      play.type = "button";
      play.className = "replay";
      play.textContent = t("play");
      // A failed, canceled or expired job has no audio: nothing to play.
      play.hidden = ["failed", "canceled", "expired"].includes(item.status);
      play.addEventListener("click", () => replay(item.id));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "quiet";
      remove.textContent = t("remove");
      remove.addEventListener("click", () => saveHistory(loadHistory().filter((i) => i.id !== item.id)));
      buttons.append(play, remove);
      li.append(snippet, buttons, meta);
      return li;
    }));
  }

  async function replay(id) {
    const generation = startWatching();
    renderStatus({ status: "queued", progress: {} });
    await follow(id, generation, true);
  }

  // ---- API key ----------------------------------------------------------------------------------
  function saveKey() {
    const key = $("api-key").value.trim();
    if (key) storage.set(STORE.key, key); else storage.remove(STORE.key);
    $("key-state").textContent = key ? t("keySaved") : t("keyCleared");
    loadVoices();
  }

  function clearKey() {
    $("api-key").value = "";
    storage.remove(STORE.key);
    $("key-state").textContent = t("keyCleared");
    loadVoices();
  }

  // ---- preview: what the voice will say, each character's pinyin and where it came from --------
  async function preview() {
    clearError();
    const body = { text: $("text").value, text_type: $("ssml").checked ? "ssml" : "text" };
    let shown;
    try {
      shown = await api("/v1/text/preview", { method: "POST", body });
    } catch (failure) {
      $("preview").hidden = true; // an earlier text's reading is no answer for this one
      showError(sentAsSsml(failure, body));
      return;
    }
    $("preview-normalized").textContent = shown.normalized;
    const list = $("preview-segments");
    list.replaceChildren();
    const sources = TEXT[state.lang].sources;
    for (const segment of shown.segments) {
      const item = document.createElement("li");
      // The segment as it is read, punctuation included; pinyin with tone marks over each
      // character, and the tone number and where the reading came from on hover.
      let next = 0;
      for (const char of Array.from(segment.text)) {
        const c = segment.chars[next];
        if (!c || c.char !== char) {
          const mark = document.createElement("span");
          mark.className = "punct";
          mark.textContent = char;
          item.append(mark);
          continue;
        }
        next += 1;
        const ruby = document.createElement("ruby");
        ruby.className = `source-${c.source}`;
        ruby.dataset.source = c.source;
        ruby.title = `${c.pinyin} · ${sources[c.source] || c.source}`;
        ruby.append(c.char);
        const reading = document.createElement("rt");
        reading.textContent = c.pinyin_marked || c.pinyin;
        ruby.append(reading);
        item.append(ruby);
      }
      list.append(item);
    }
    $("preview").hidden = false;
  }

  // ---- live mode: the text spoken as it is typed (the WebSocket /v1/live) -------------------------
  // The session gets each finished sentence at once (the server speaks a sentence as soon as its
  // end arrives) and the unfinished rest, with a `flush`, once typing has paused LIVE_PAUSE_MS; a
  // typo fixed before then never reaches it. Only appended text is sent. Text already sent cannot
  // be unsaid, so an edit inside it is a `cancel` (which also silences what is playing) and the box
  // is sent again from the start of the sentence the edit is in, as new text: the simplest
  // behaviour that is always right, and the listener hears the corrected sentence whole.
  // Deleting from the end only forgets the deleted text: what was said was said.
  // The session speaks PCM, played with the Web Audio API: each binary frame becomes an
  // AudioBuffer, scheduled right after the one before, so the pieces play without a gap.
  const LIVE_PAUSE_MS = 600;
  const LIVE_PIECE = 8000; // code points per text message, far under the server's 64 Ki characters
  const LIVE_LEAD_S = 0.05; // how far ahead of the clock a piece is scheduled after a silence
  const SENTENCE_END = "。！？!?\n"; // shared/plan.py's, and the closers that stay with a sentence
  const CLOSERS = "”’」』）)】》\"'";
  const CLOSE_IDLE = 4408;

  const live = {
    on: false,
    socket: null, // the session's WebSocket, open or opening; null between sessions
    queue: [], // messages for a socket still opening: the start goes first
    rate: null, // the session's sample rate
    asked: null, // the rate the start message asked for
    sent: "", // what of the box the page has sent (or counts as said)
    runs: [], // {session, box}: where each piece sent begins, in the session's text and in the box
    sessionChars: 0, // code points sent in this session: the offset of the next piece
    unacked: 0, // cancels sent, not yet acknowledged: frames until then are of canceled text
    carry: null, // an odd byte of the frame before (a sample split between two frames)
    pause: null, // the timer that flushes once typing pauses
    composing: false, // an input method is composing: its letters are no text yet
    mark: null, // [from, to): the sentence being spoken, in code points of the box
    status: "", // the key of the status line
    failed: false, // the session ended with an error that is shown
  };
  const sound = { ctx: null, next: 0, sources: new Set(), timers: new Set(), audioMs: 0, sockets: 0, canceled: 0 };

  const codePoints = (text) => Array.from(text).length;

  function liveData() {
    const box = $("live-box");
    box.dataset.liveAudioMs = String(Math.round(sound.audioMs));
    box.dataset.liveSockets = String(sound.sockets);
    box.dataset.liveCanceled = String(sound.canceled);
    box.dataset.livePlaying = String(sound.sources.size > 0);
  }

  function setLiveStatus(key) {
    live.status = key;
    $("live-box").dataset.liveState = live.on ? key.replace(/^live/, "").toLowerCase() : "off";
    $("live-status").textContent = key ? t(key) : "";
  }

  function renderLive() {
    $("live-box").hidden = !live.on;
    $("live-help").hidden = !live.on;
    $("job-actions").hidden = live.on;
    // A live session speaks plain text as PCM: these have no say in it.
    for (const id of ["ssml", "format", "marks"]) $(id).disabled = live.on;
    setLiveStatus(live.status);
    renderLiveSaid();
  }

  // The box's text with the sentence being spoken marked, scrolled so the mark shows.
  function renderLiveSaid() {
    const said = $("live-said");
    const value = $("text").value;
    said.hidden = !live.on || !value;
    if (said.hidden) return;
    if (!live.mark) {
      said.replaceChildren(value);
      return;
    }
    const points = Array.from(value);
    const [from, to] = live.mark;
    const mark = document.createElement("mark");
    mark.textContent = points.slice(from, to).join("");
    said.replaceChildren(points.slice(0, from).join(""), mark, points.slice(to).join(""));
    said.scrollTop = Math.max(0, mark.offsetTop - said.offsetTop - said.clientHeight / 3);
  }

  // Where an offset into the session's text is in the box (code points).
  function boxOffset(offset) {
    let run = live.runs[0] || { session: 0, box: 0 };
    for (const r of live.runs) if (r.session <= offset) run = r;
    return run.box + (offset - run.session);
  }

  function startMessage() {
    live.asked = Number($("sample-rate").value) || null;
    const message = {
      type: "start", format: "pcm", sample_rate: live.asked,
      emotion: $("emotion").value || "neutral",
      speed: Number($("speed").value), pitch: Number($("pitch").value), volume: Number($("volume").value),
    };
    const key = storage.get(STORE.key);
    if (key) message.api_key = key;
    if ($("voice").value) message.voice = $("voice").value;
    const loudness = $("loudness").value;
    if (loudness) message.loudness = loudness === "off" ? "off" : Number(loudness);
    return message;
  }

  function liveOpen() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/v1/live`);
    socket.binaryType = "arraybuffer";
    Object.assign(live, { socket, queue: [], rate: null, runs: [], sessionChars: 0, unacked: 0, carry: null,
      failed: false });
    sound.sockets += 1;
    liveData();
    setLiveStatus("liveConnecting");
    socket.addEventListener("open", () => {
      if (socket !== live.socket) return;
      socket.send(JSON.stringify(startMessage()));
      for (const message of live.queue) socket.send(message);
      live.queue = [];
    });
    socket.addEventListener("message", (event) => { if (socket === live.socket) onLiveMessage(event.data); });
    socket.addEventListener("close", (event) => { if (socket === live.socket) onLiveClose(event); });
  }

  function liveSend(message) {
    if (!live.socket) liveOpen();
    const text = JSON.stringify(message);
    if (live.socket.readyState === WebSocket.OPEN) live.socket.send(text);
    else live.queue.push(text);
  }

  function sendText(text, boxAt) {
    const points = Array.from(text);
    if (!live.socket) liveOpen(); // a new session counts from 0: its runs start with this piece
    for (let i = 0; i < points.length; i += LIVE_PIECE) {
      live.runs.push({ session: live.sessionChars, box: boxAt + i });
      const piece = points.slice(i, i + LIVE_PIECE);
      live.sessionChars += piece.length;
      liveSend({ type: "text", text: piece.join("") });
    }
  }

  // How much of `text` is whole sentences (with the quotes and brackets closing them).
  function wholeSentences(text) {
    let end = 0;
    for (let i = 0; i < text.length; i += 1) {
      if (SENTENCE_END.includes(text[i])) {
        end = i + 1;
        while (end < text.length && (SENTENCE_END.includes(text[end]) || CLOSERS.includes(text[end]))) end += 1;
      }
    }
    return end;
  }

  // `text` cut after each sentence end (and its closers); the rest, if any, last. Each is sent as a
  // message of its own: the server makes one sentence of all the whole ones a message holds, and
  // a sentence each is what lets a paste be marked, and canceled, sentence by sentence.
  function splitSentences(text) {
    const pieces = [];
    let from = 0;
    for (let i = 0; i < text.length; i += 1) {
      if (!SENTENCE_END.includes(text[i])) continue;
      let end = i + 1;
      while (end < text.length && (SENTENCE_END.includes(text[end]) || CLOSERS.includes(text[end]))) end += 1;
      pieces.push(text.slice(from, end));
      from = end;
      i = end - 1;
    }
    if (from < text.length) pieces.push(text.slice(from));
    return pieces;
  }

  // Where the sentence holding `at` begins in `text`.
  function sentenceStart(text, at) {
    for (let i = at - 1; i >= 0; i -= 1) if (SENTENCE_END.includes(text[i])) return i + 1;
    return 0;
  }

  // Send what was added to the box since the last send: whole sentences now, the rest once the
  // typing has paused (`paused`).
  function liveSync(paused) {
    clearTimeout(live.pause);
    if (!live.on || live.composing) return;
    const value = $("text").value;
    if (!value.startsWith(live.sent)) {
      if (live.sent.startsWith(value)) {
        live.sent = value;
      } else {
        let at = 0;
        while (at < value.length && value[at] === live.sent[at]) at += 1;
        liveCancel();
        live.sent = value.slice(0, sentenceStart(value, at));
      }
    }
    const rest = value.slice(live.sent.length);
    const length = paused ? rest.length : wholeSentences(rest);
    let at = codePoints(live.sent);
    let spoke = false;
    for (const piece of splitSentences(rest.slice(0, length))) {
      if (piece.trim()) { // white space alone is nothing to say
        sendText(piece, at);
        spoke = true;
      }
      at += codePoints(piece);
    }
    if (paused && spoke) liveSend({ type: "flush" });
    live.sent += rest.slice(0, length);
  }

  function onLiveInput() {
    renderLiveSaid();
    if (!live.on || live.composing) return;
    liveSync(false);
    live.pause = setTimeout(() => liveSync(true), LIVE_PAUSE_MS);
  }

  function onLiveMessage(data) {
    if (typeof data !== "string") {
      if (!live.unacked) playPcm(data);
      return;
    }
    let event;
    try { event = JSON.parse(data); } catch { return; }
    if (event.type === "started") {
      live.rate = event.sample_rate || live.asked || (state.caps && state.caps.native_sample_rate) || 24000;
      if (state.lastError && state.lastError.live) clearError(); // a session again: the last one's end is old news
      audioContext(live.rate);
      if (!sound.sources.size) setLiveStatus("liveReady");
    } else if (event.type === "sentence_started" && !live.unacked) {
      highlightWhenHeard(boxOffset(event.start), boxOffset(event.end));
    } else if (event.type === "canceled") {
      live.unacked = Math.max(0, live.unacked - 1);
      sound.canceled += 1;
      liveData();
    } else if (event.type === "error") {
      const failure = new ApiFailure(0, event.code || "internal_error", event.message || "", event.field || null);
      failure.live = true;
      if (event.code === "text_too_long") {
        failure.code = "live_too_long";
        failure.max = (/(\d+)/.exec(event.message || "") || [])[1];
      }
      // A session idle for a while is closed by the server: nothing went wrong, and the next
      // text opens another.
      if (event.code === "idle_timeout") return;
      if (event.code !== "job_lost" && event.sentence === undefined) live.failed = true;
      showError(failure);
    }
  }

  function onLiveClose(event) {
    live.socket = null;
    live.queue = [];
    if (!live.on) return;
    if (event.code !== 1000 && event.code !== CLOSE_IDLE && !live.failed) {
      const failure = new ApiFailure(0, "live_closed", event.reason || String(event.code));
      failure.live = true;
      showError(failure);
    }
    if (!sound.sources.size) setLiveStatus("liveClosed");
  }

  // ---- live playback ---------------------------------------------------------------------------
  // The session's rate, as far as the page knows before `started` says it.
  const expectedRate = () => Number($("sample-rate").value) || (state.caps && state.caps.native_sample_rate) || 24000;

  function audioContext(rate) {
    // Made (or woken) in the click that turns live mode on: browsers let a page sound only after
    // a gesture. It runs at the session's rate, so the pieces are resampled once, on the way out,
    // as one signal: pieces resampled one by one can click at their seams.
    if (sound.ctx && sound.ctx.sampleRate !== rate && !sound.sources.size) {
      sound.ctx.close().catch(() => { /* closed already */ });
      sound.ctx = null;
    }
    if (!sound.ctx) {
      try {
        sound.ctx = new AudioContext({ sampleRate: rate, latencyHint: "interactive" });
      } catch {
        sound.ctx = new AudioContext(); // a rate this browser will not run at: it resamples each piece
      }
      sound.next = 0;
    }
    if (sound.ctx.state === "suspended") sound.ctx.resume().catch(() => { /* woken by the next gesture */ });
    $("live-box").dataset.liveContextRate = String(sound.ctx.sampleRate);
    return sound.ctx;
  }

  function playPcm(buffer) {
    let bytes = new Uint8Array(buffer);
    if (live.carry !== null) {
      const joined = new Uint8Array(bytes.length + 1);
      joined[0] = live.carry;
      joined.set(bytes, 1);
      bytes = joined;
    }
    const count = bytes.length >> 1;
    live.carry = bytes.length % 2 ? bytes[bytes.length - 1] : null;
    if (!count) return;
    const view = new DataView(bytes.buffer, bytes.byteOffset, count * 2);
    const samples = new Float32Array(count);
    for (let i = 0; i < count; i += 1) samples[i] = view.getInt16(i * 2, true) / 32768;
    const ctx = audioContext(live.rate || expectedRate());
    const clip = ctx.createBuffer(1, count, live.rate || expectedRate());
    clip.copyToChannel(samples, 0);
    const source = ctx.createBufferSource();
    source.buffer = clip;
    source.connect(ctx.destination);
    const at = Math.max(sound.next, ctx.currentTime + LIVE_LEAD_S);
    source.start(at);
    sound.next = at + clip.duration;
    sound.sources.add(source);
    source.onended = () => {
      sound.sources.delete(source);
      if (!sound.sources.size) heardAll();
    };
    sound.audioMs += clip.duration * 1000;
    setLiveStatus("liveSpeaking");
    liveData();
  }

  // A sentence's audio follows its `sentence_started` and plays after what is scheduled already:
  // its mark shows when that time comes.
  function highlightWhenHeard(from, to) {
    const ctx = audioContext(live.rate || expectedRate());
    const delay = Math.max(0, Math.max(sound.next, ctx.currentTime + LIVE_LEAD_S) - ctx.currentTime) * 1000;
    $("live-box").dataset.liveSentenceMs = String(Math.round(sound.audioMs));
    const timer = setTimeout(() => {
      sound.timers.delete(timer);
      live.mark = [from, to];
      renderLiveSaid();
    }, delay);
    sound.timers.add(timer);
  }

  function heardAll() {
    sound.next = 0;
    live.mark = null;
    renderLiveSaid();
    liveData();
    if (live.on && live.status === "liveSpeaking") setLiveStatus(live.socket ? "liveReady" : "liveClosed");
  }

  function silence() {
    for (const source of sound.sources) {
      source.onended = null; // stopped, not heard to the end
      try { source.stop(); } catch { /* not started yet */ }
    }
    sound.sources.clear();
    for (const timer of sound.timers) clearTimeout(timer);
    sound.timers.clear();
    sound.next = 0;
    live.carry = null;
    live.mark = null;
    renderLiveSaid();
    liveData();
  }

  // Barge-in: nothing queued is spoken, and what plays stops now. The session stays open.
  function liveCancel() {
    silence();
    if (live.socket) {
      live.unacked += 1;
      liveSend({ type: "cancel" });
    }
  }

  function liveStop() {
    clearTimeout(live.pause);
    live.sent = $("text").value; // all of it counts as said: typing on speaks only what is new
    liveCancel();
    setLiveStatus("liveStopped");
  }

  // The session ends: nothing more is spoken, and the server records it finished and closes.
  function liveEnd() {
    const socket = live.socket;
    live.socket = null;
    live.queue = [];
    clearTimeout(live.pause);
    silence();
    if (!socket) return;
    if (socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "cancel" }));
      socket.send(JSON.stringify({ type: "finish" }));
    } else {
      socket.close(1000);
    }
  }

  function toggleLive() {
    live.on = $("live").checked;
    if (live.on) {
      audioContext(expectedRate());
      clearError();
      live.sent = $("text").value; // what is in the box already is not read (see liveHelp)
      live.status = "liveConnecting";
      liveOpen();
      $("text").focus();
    } else {
      liveEnd();
    }
    renderLive();
  }

  // A setting changed: the session speaks with the settings it started with, so it ends, and the
  // next text opens one with the new settings.
  function liveSettingsChanged() {
    if (!live.on || !live.socket) return;
    liveEnd();
    setLiveStatus("liveReady");
  }

  // ---- start ------------------------------------------------------------------------------------
  function start() {
    state.lang = storage.get(STORE.lang) === "en" ? "en" : "zh";
    $("api-key").value = storage.get(STORE.key, "");
    $("tts-form").addEventListener("submit", submit);
    $("preview-button").addEventListener("click", preview);
    $("text").addEventListener("input", renderCounter);
    $("ssml").addEventListener("change", renderSsmlHelp);
    $("player").addEventListener("timeupdate", renderPlayerTime);
    $("text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        // In live mode there is no job to submit: the shortcut speaks what is typed, now.
        if (live.on) liveSync(true); else $("tts-form").requestSubmit();
      }
    });
    for (const name of ["speed", "pitch", "volume"]) {
      $(name).addEventListener("input", () => renderSlider(name));
      renderSlider(name);
    }
    $("voice").addEventListener("change", renderVoiceNote);
    $("format").addEventListener("change", renderRates);
    $("cancel").addEventListener("click", cancel);
    $("lang-toggle").addEventListener("click", () => {
      state.lang = state.lang === "zh" ? "en" : "zh";
      storage.set(STORE.lang, state.lang);
      applyLanguage();
    });
    $("key-save").addEventListener("click", saveKey);
    $("key-clear").addEventListener("click", clearKey);
    $("history-clear").addEventListener("click", () => saveHistory([]));
    $("live").addEventListener("change", toggleLive);
    $("live-stop").addEventListener("click", liveStop);
    $("text").addEventListener("input", onLiveInput);
    $("text").addEventListener("compositionstart", () => { live.composing = true; });
    $("text").addEventListener("compositionend", () => { live.composing = false; onLiveInput(); });
    $("text").addEventListener("keydown", (event) => {
      if (event.key === "Escape" && live.on) liveStop();
    });
    for (const id of ["voice", "emotion", "speed", "pitch", "volume", "loudness", "sample-rate"]) {
      $(id).addEventListener("change", liveSettingsChanged);
    }
    // Leaving the page ends its session (a page kept in the back/forward cache opens a new one).
    window.addEventListener("pagehide", () => { if (live.on) liveEnd(); });
    renderMenus();
    applyLanguage();
    loadVoices();
  }

  start();
})();
