// Calls the write-up's GET /get_vector?sentence= with java.net.http.HttpClient; plain JDK 17, no libraries.
//
//   java clients/java/GetVectorClient.java [--url http://127.0.0.1:8000] [SENTENCE ...]
//
// Without SENTENCE arguments the sentences are read from stdin, one per line, as UTF-8. Each sentence
// is one request (all sent at once, so the service batches them); prints one line per sentence, in
// input order: the vector's components separated by commas. EMBED_API_KEY, when set, is sent as a
// Bearer token.

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

public class GetVectorClient {
    public static void main(String[] args) throws Exception {
        String url = System.getenv().getOrDefault("EMBED_URL", "http://127.0.0.1:8000");
        List<String> sentences = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals("--url")) {
                url = args[++i];
            } else {
                sentences.add(args[i]);
            }
        }
        if (sentences.isEmpty()) {
            sentences = readLines();
        }
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
        String key = System.getenv("EMBED_API_KEY");
        List<CompletableFuture<HttpResponse<String>>> pending = new ArrayList<>();
        for (String sentence : sentences) {
            String query = "sentence=" + URLEncoder.encode(sentence, StandardCharsets.UTF_8);
            HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(url + "/get_vector?" + query))
                    .timeout(Duration.ofSeconds(60))
                    .GET();
            if (key != null && !key.isEmpty()) {
                request.header("Authorization", "Bearer " + key);
            }
            pending.add(http.sendAsync(request.build(), HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8)));
        }
        int failures = 0;
        for (CompletableFuture<HttpResponse<String>> future : pending) {
            HttpResponse<String> response = future.join();
            if (response.statusCode() != 200) {
                String retryAfter = response.headers().firstValue("Retry-After").orElse("-");
                System.err.println("HTTP " + response.statusCode() + " (Retry-After " + retryAfter + "): "
                        + response.body());
                failures++;
                continue;
            }
            System.out.println(csv(vector(response.body())));
        }
        System.exit(failures == 0 ? 0 : 1);
    }

    /** Read `{"vector": [...]}`. */
    @SuppressWarnings("unchecked")
    static float[] vector(String body) {
        List<Object> values = (List<Object>) ((Map<String, Object>) Json.parse(body)).get("vector");
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
