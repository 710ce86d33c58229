"""``asr serve``: a transcription service over HTTP, and a web page to try it.

The modules: :mod:`~asr.serve.app` (the endpoints), :mod:`~asr.serve.guard` (bounding each request and the
error answers), :mod:`~asr.serve.vosk` (the live stream in Vosk's wire protocol), :mod:`~asr.serve.launch`
(``asr serve``: binding the socket, the worker processes) and :mod:`~asr.serve.client` (a plain HTTP client).

FastAPI on uvicorn. The model is loaded once per worker process. Endpoints:

- ``POST /v1/audio/transcriptions``: the OpenAI audio API's form fields (``file``, ``model``
  (ignored: the server has one), ``response_format`` = ``json`` | ``text`` | ``srt`` | ``vtt`` |
  ``verbose_json`` with segments (and words with ``timestamp_granularities[]=word``), ``language``,
  ``prompt``, ``temperature`` (accepted, unused)), so existing clients work unchanged.
- ``GET /health``: ``{"status": "ok", "model": <file name>, ...}``.
- ``GET /``: the page (pick, drop or record audio; see the transcript and the words' times).
- ``WebSocket /v1/stream`` (a streaming model): live transcription in Vosk's server protocol, so Vosk's
  clients work unchanged: an optional text message ``{"config": {"sample_rate": N}}`` (default: the
  model's rate), binary messages of 16-bit little-endian mono PCM, each answered with one message:
  ``{"partial": "..."}`` or, when an endpoint ended an utterance, ``{"result": [{"word", "start", "end",
  "conf"}], "text": "..."}`` (times in seconds from the stream's start); then ``{"eof": 1}``, answered
  with the last utterance's result. A bad message (text that is not JSON or not one of these, an odd
  byte count, a sample rate that is no number of Hz in 1000-192000, a new rate after audio, anything
  after eof) gets ``{"error": "..."}`` and the connection is closed (code 1007 or 1008); nothing stops
  for the other connections. A connection silent for ``timeout`` seconds is closed (1001).

Limits, each answered with an HTTP 4xx and a JSON ``{"error": {"message", "type"}}`` naming the
problem, after which the service goes on serving:

- the request body: at most ``max_mb`` (plus a form's overhead), counted as the bytes arrive,
  with or without a Content-Length (413); the form parser keeps an upload over 1 MB in a
  temporary file until the request ends;
- the audio: a readable format (400), at most ``max_seconds`` long (413), at most
  :data:`MAX_CHANNELS` channels (400), and at most ``max_seconds`` x :data:`SAMPLES_PER_SECOND`
  decoded samples counting every channel (413); it is mixed down block by block, so a request
  holds the upload, the mono signal at the model's rate (600 s at 16 kHz: 38 MB) and one
  chunk's features and network activations;
- time: a request whose body stops arriving for ``timeout`` seconds gets a 408, an idle
  keep-alive connection is closed after :data:`KEEP_ALIVE_SECONDS`;
- concurrency: past ``max_connections`` open connections and requests per worker, a 503.
"""
