// Streams texts over the service's WebSocket ws/embed/ with java.net.http.WebSocket; plain JDK 17, no libraries.
//
//   java clients/java/StreamingClient.java [--url ws://127.0.0.1:8000/ws/embed/] [--in-flight 8]
//        [--encoding float|base64] [TEXT ...]
//
// Each text is one frame {"id": i, "input": text}; up to --in-flight frames are unanswered at once
// (the server's per-socket limit, EMBED_WS_MAX_INFLIGHT, is 32 by default) and answers arrive in
// whatever order the batcher finishes them, matched back by id. Without TEXT arguments the texts are
// read from stdin, one per line, as UTF-8. Prints one line per text, in input order: the vector's
// components separated by commas. EMBED_API_KEY, when set, goes in the handshake's Authorization header.

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.WebSocket;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;

public class StreamingClient {
    public static void main(String[] args) throws Exception {
        String url = System.getenv().getOrDefault("EMBED_WS_URL", "ws://127.0.0.1:8000/ws/embed/");
        int inFlight = 8;
        String encoding = "float";
        List<String> texts = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--url" -> url = args[++i];
                case "--in-flight" -> inFlight = Integer.parseInt(args[++i]);
                case "--encoding" -> encoding = args[++i];
                default -> texts.add(args[i]);
            }
        }
        if (texts.isEmpty()) {
            texts = readLines();
        }
        Answers answers = new Answers(texts.size(), inFlight);
        WebSocket.Builder builder = HttpClient.newHttpClient().newWebSocketBuilder()
                .connectTimeout(Duration.ofSeconds(10));
        String key = System.getenv("EMBED_API_KEY");
        if (key != null && !key.isEmpty()) {
            builder.header("Authorization", "Bearer " + key);
        }
        WebSocket socket = builder.buildAsync(URI.create(url), answers).join();
        for (int id = 0; id < texts.size() && !answers.closed; id++) {
            answers.window.acquire();
            if (answers.closed) {
                break; // the server closed the socket (a refused key, a frame over its limit): stop sending
            }
            String frame = "{\"id\":" + id + ",\"input\":" + Json.quote(texts.get(id))
                    + ",\"encoding_format\":" + Json.quote(encoding) + "}";
            try {
                // One send at a time: java.net.http.WebSocket refuses a send while the previous one is pending.
                socket.sendText(frame, true).join();
            } catch (CompletionException closedMeanwhile) {
                break; // the listener saw the close or the error and failed what is unanswered
            }
        }
        if (!answers.done.await(120, TimeUnit.SECONDS)) {
            System.err.println("timed out waiting for answers");
            System.exit(1);
        }
        if (!answers.closed) {
            socket.sendClose(WebSocket.NORMAL_CLOSURE, "done").join();
        }
        if (answers.failures > 0) {
            System.exit(1);
        }
        for (int id = 0; id < texts.size(); id++) {
            System.out.println(csv(answers.vectors.get(id)));
        }
    }

    /** Collects answer frames (whole messages, possibly delivered in parts) and matches them to ids. */
    static final class Answers implements WebSocket.Listener {
        final Map<Integer, float[]> vectors = new ConcurrentHashMap<>();
        final CountDownLatch done;
        final Semaphore window;
        volatile int failures;
        volatile boolean closed;
        private final StringBuilder message = new StringBuilder();

        Answers(int expected, int inFlight) {
            done = new CountDownLatch(expected);
            window = new Semaphore(inFlight);
        }

        @Override
        public void onOpen(WebSocket socket) {
            socket.request(1);
        }

        @Override
        public CompletionStage<?> onText(WebSocket socket, CharSequence part, boolean last) {
            message.append(part);
            if (last) {
                handle(message.toString());
                message.setLength(0);
            }
            socket.request(1);
            return null;
        }

        @SuppressWarnings("unchecked")
        private void handle(String text) {
            Map<String, Object> frame = (Map<String, Object>) Json.parse(text);
            Object id = frame.get("id");
            if (frame.containsKey("error")) {
                // Error frames carry the HTTP-equivalent status (429, 503: retry after retry_after_s).
                System.err.println("error for id " + id + " (status " + frame.get("status") + "): " + frame.get("error"));
                failures++;
            } else {
                List<Object> rows = (List<Object>) frame.get("embeddings");
                Object row = rows.get(0);
                vectors.put(((Number) id).intValue(),
                        row instanceof String b64 ? fromBase64(b64) : fromList((List<Object>) row));
            }
            window.release();
            done.countDown();
        }

        @Override
        public CompletionStage<?> onClose(WebSocket socket, int code, String reason) {
            if (done.getCount() > 0) {
                System.err.println("socket closed by the server: " + code + " " + reason);
            }
            failRest();
            return null;
        }

        @Override
        public void onError(WebSocket socket, Throwable error) {
            System.err.println("socket error: " + error);
            failRest();
        }

        /** The socket is gone: every text not answered yet has failed, and a sender waiting for room stops. */
        private void failRest() {
            closed = true;
            while (done.getCount() > 0) {
                failures++;
                done.countDown();
            }
            window.release(); // wakes the sender blocked in acquire(); it sees `closed` and stops
        }
    }

    static float[] fromBase64(String text) {
        FloatBuffer floats = ByteBuffer.wrap(Base64.getDecoder().decode(text))
                .order(ByteOrder.LITTLE_ENDIAN)
                .asFloatBuffer();
        float[] vector = new float[floats.remaining()];
        floats.get(vector);
        return vector;
    }

    static float[] fromList(List<Object> values) {
        float[] vector = new float[values.size()];
        for (int i = 0; i < vector.length; i++) {
            vector[i] = ((Number) values.get(i)).floatValue();
        }
        return vector;
    }

    static String csv(float[] vector) {
        StringBuilder line = new StringBuilder();
        for (int i = 0; i < vector.length; i++) {
            line.append(i == 0 ? "" : ",").append(vector[i]);
        }
        return line.toString();
    }

    static List<String> readLines() throws IOException {
        List<String> lines = new ArrayList<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            if (!line.isBlank()) {
                lines.add(line);
            }
        }
        return lines;
    }

    /** A minimal, strict JSON reader and string quoter: enough for the service's fixed response shapes. */
    static final class Json {
        private final String s;
        private int i;

        private Json(String s) {
            this.s = s;
        }

        /** Parse `text`: objects become Maps, arrays Lists, numbers Doubles, and strings, booleans, null. */
        static Object parse(String text) {
            Json reader = new Json(text);
            Object value = reader.value();
            reader.skipSpace();
            if (reader.i != text.length()) {
                throw reader.error("trailing characters");
            }
            return value;
        }

        static String quote(String text) {
            StringBuilder out = new StringBuilder("\"");
            for (char c : text.toCharArray()) {
                switch (c) {
                    case '"' -> out.append("\\\"");
                    case '\\' -> out.append("\\\\");
                    case '\n' -> out.append("\\n");
                    case '\r' -> out.append("\\r");
                    case '\t' -> out.append("\\t");
                    default -> {
                        if (c < 0x20) {
                            out.append(String.format("\\u%04x", (int) c));
                        } else {
                            out.append(c);
                        }
                    }
                }
            }
            return out.append('"').toString();
        }

        private Object value() {
            skipSpace();
            if (i >= s.length()) {
                throw error("unexpected end");
            }
            return switch (s.charAt(i)) {
                case '{' -> object();
                case '[' -> array();
                case '"' -> string();
                case 't' -> literal("true", Boolean.TRUE);
                case 'f' -> literal("false", Boolean.FALSE);
                case 'n' -> literal("null", null);
                default -> number();
            };
        }

        private Map<String, Object> object() {
            Map<String, Object> map = new LinkedHashMap<>();
            i++;
            skipSpace();
            if (peek() == '}') {
                i++;
                return map;
            }
            while (true) {
                skipSpace();
                if (peek() != '"') {
                    throw error("expected a key");
                }
                String key = string();
                skipSpace();
                if (next() != ':') {
                    throw error("expected ':'");
                }
                map.put(key, value());
                skipSpace();
                char c = next();
                if (c == '}') {
                    return map;
                }
                if (c != ',') {
                    throw error("expected ',' or '}'");
                }
            }
        }

        private List<Object> array() {
            List<Object> list = new ArrayList<>();
            i++;
            skipSpace();
            if (peek() == ']') {
                i++;
                return list;
            }
            while (true) {
                list.add(value());
                skipSpace();
                char c = next();
                if (c == ']') {
                    return list;
                }
                if (c != ',') {
                    throw error("expected ',' or ']'");
                }
            }
        }

        private String string() {
            StringBuilder out = new StringBuilder();
            i++;
            while (true) {
                char c = next();
                if (c == '"') {
                    return out.toString();
                }
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                char escape = next();
                switch (escape) {
                    case '"', '\\', '/' -> out.append(escape);
                    case 'b' -> out.append('\b');
                    case 'f' -> out.append('\f');
                    case 'n' -> out.append('\n');
                    case 'r' -> out.append('\r');
                    case 't' -> out.append('\t');
                    case 'u' -> {
                        if (i + 4 > s.length()) {
                            throw error("short \\u escape");
                        }
                        out.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                        i += 4;
                    }
                    default -> throw error("bad escape");
                }
            }
        }

        private Double number() {
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
            if (start == i) {
                throw error("unexpected character");
            }
            return Double.valueOf(s.substring(start, i));
        }

        private Object literal(String word, Object value) {
            if (!s.startsWith(word, i)) {
                throw error("unexpected character");
            }
            i += word.length();
            return value;
        }

        private void skipSpace() {
            while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
        }

        private char peek() {
            if (i >= s.length()) {
                throw error("unexpected end");
            }
            return s.charAt(i);
        }

        private char next() {
            char c = peek();
            i++;
            return c;
        }

        private IllegalArgumentException error(String what) {
            return new IllegalArgumentException("bad JSON at character " + i + ": " + what);
        }
    }
}
