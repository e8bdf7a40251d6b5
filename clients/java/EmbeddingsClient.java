// Calls POST /v1/embeddings (the OpenAI contract) with java.net.http.HttpClient; plain JDK 17, no libraries.
//
//   java clients/java/EmbeddingsClient.java [--url http://127.0.0.1:8000] [--model NAME]
//        [--encoding float|base64] [--dimensions N] [TEXT ...]
//
// Without TEXT arguments the texts are read from stdin, one per line, as UTF-8 (safer than argv for
// non-ASCII text on machines whose locale is not UTF-8). Prints one line per input, in input order:
// the vector's components separated by commas. EMBED_API_KEY, when set, is sent as a Bearer token.
// On 429/503 it waits for Retry-After and tries again (3 attempts in all), as an OpenAI SDK would.

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
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

public class EmbeddingsClient {
    private static final int ATTEMPTS = 3;

    public static void main(String[] args) throws Exception {
        String url = System.getenv().getOrDefault("EMBED_URL", "http://127.0.0.1:8000");
        String model = null;
        String encoding = "float";
        Integer dimensions = null;
        List<String> texts = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--url" -> url = args[++i];
                case "--model" -> model = args[++i];
                case "--encoding" -> encoding = args[++i];
                case "--dimensions" -> dimensions = Integer.valueOf(args[++i]);
                default -> texts.add(args[i]);
            }
        }
        if (!encoding.equals("float") && !encoding.equals("base64")) {
            System.err.println("--encoding must be float or base64");
            System.exit(2);
        }
        if (texts.isEmpty()) {
            texts = readLines();
        }
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
        for (float[] vector : embed(http, url, model, encoding, dimensions, texts)) {
            System.out.println(csv(vector));
        }
    }

    /** Return one vector per text, in input order. */
    static List<float[]> embed(HttpClient http, String url, String model, String encoding, Integer dimensions,
            List<String> texts) throws IOException, InterruptedException {
        StringBuilder body = new StringBuilder("{\"input\":[");
        for (int i = 0; i < texts.size(); i++) {
            body.append(i == 0 ? "" : ",").append(Json.quote(texts.get(i)));
        }
        body.append("],\"encoding_format\":").append(Json.quote(encoding));
        if (model != null) {
            body.append(",\"model\":").append(Json.quote(model));
        }
        if (dimensions != null) {
            body.append(",\"dimensions\":").append(dimensions);
        }
        body.append('}');
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(url + "/v1/embeddings"))
                .timeout(Duration.ofSeconds(60))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body.toString(), StandardCharsets.UTF_8));
        String key = System.getenv("EMBED_API_KEY");
        if (key != null && !key.isEmpty()) {
            request.header("Authorization", "Bearer " + key);
        }
        for (int attempt = 1; ; attempt++) {
            HttpResponse<String> response = http.send(request.build(),
                    HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
            int status = response.statusCode();
            if (status == 200) {
                return vectors(response.body());
            }
            String retryAfter = response.headers().firstValue("Retry-After").orElse(null);
            if ((status == 429 || status == 503) && retryAfter != null && attempt < ATTEMPTS) {
                System.err.println("HTTP " + status + ", retrying after " + retryAfter + " s");
                Thread.sleep(Long.parseLong(retryAfter.trim()) * 1000);
                continue;
            }
            System.err.println("HTTP " + status + ": " + response.body());
            System.exit(1);
        }
    }

    /** Read `data[*].embedding` (a float list or base64 little-endian float32) ordered by `data[*].index`. */
    @SuppressWarnings("unchecked")
    static List<float[]> vectors(String body) {
        List<Object> data = (List<Object>) ((Map<String, Object>) Json.parse(body)).get("data");
        float[][] ordered = new float[data.size()][];
        for (Object item : data) {
            Map<String, Object> entry = (Map<String, Object>) item;
            int index = ((Number) entry.get("index")).intValue();
            Object embedding = entry.get("embedding");
            ordered[index] = embedding instanceof String text ? fromBase64(text) : fromList((List<Object>) embedding);
        }
        return List.of(ordered);
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
