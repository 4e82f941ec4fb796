package org.peft4j.template;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.el.JinjavaInterpreterResolver;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.exptest.ExpTest;
import com.hubspot.jinjava.lib.filter.Filter;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import com.hubspot.jinjava.lib.tag.Tag;
import com.hubspot.jinjava.objects.SafeString;
import com.hubspot.jinjava.tree.Node;
import com.hubspot.jinjava.tree.TagNode;
import jinjava.javax.el.CompositeELResolver;
import jinjava.javax.el.ELContext;
import jinjava.javax.el.ELResolver;
import org.peft4j.core.Peft4jException;
import org.peft4j.formats.json.PyJson;

import java.beans.FeatureDescriptor;
import java.time.Clock;
import java.time.LocalDateTime;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

/// Jinjava configured to behave like transformers' chat-template environment (`utils/chat_template_utils.py`):
/// `trim_blocks` + `lstrip_blocks` and Python's `not` precedence (both through [JinjaSource]),
/// globals `raise_exception` and `strftime_now`, the `tojson` filter as `json.dumps(ensure_ascii=False)`, Python's
/// `trim`, the `items` filter, Python's notion of `iterable`/`sequence`/`mapping`/`string`, Python `str` methods,
/// and the `{% generation %}` block (rendered as its body). Everything else is stock Jinjava.
final class Jinja {
    private Jinja() {}

    /// Per-render state reachable from the static template functions through the context.
    static final class RenderState {
        final Clock clock;
        final long deadline;   // System.nanoTime() by which rendering must end
        String raised; // the first raise_exception message, if any
        boolean timedOut;
        boolean tooBig;   // a loop's output grew past MAX_OUTPUT_CHARS: the render is abandoned like a timeout

        RenderState(Clock clock, long deadline) { this.clock = clock; this.deadline = deadline; }
    }

    /// The most characters a render may produce (and the longest string or list it may build): a template that
    /// allocates without bound (nested loops printing, a string doubled in a loop) stops here with an error instead of
    /// filling the heap. Far above any real prompt (a 128k-token context is ~0.5 M characters).
    static final long MAX_OUTPUT_CHARS = 8L << 20;
    static final int MAX_COLLECTION = 1 << 20;

    static final String STATE = "__peft4j_render_state";

    private static final Jinjava JINJAVA = create();

    /// Renders `source` with `variables` (which are not modified); `clock` is what `strftime_now` reads.
    static String render(String source, Map<String, Object> variables, Clock clock, java.time.Duration timeLimit) {
        var context = new java.util.HashMap<>(variables);
        RenderState state = new RenderState(clock, System.nanoTime() + timeLimit.toNanos());
        context.put(STATE, state);
        // Jinja2 templates test `strftime_now is defined`; a function alone is not a defined variable in Jinjava.
        context.putIfAbsent("strftime_now", "strftime_now");
        context.putIfAbsent("raise_exception", "raise_exception");
        RenderResult result = JINJAVA.renderForResult(JinjaSource.prepare(source), context);
        if (state.timedOut)
            throw new Peft4jException.FormatException("Chat template did not finish rendering within " + seconds(timeLimit)
                    + " (a loop that runs too long?); fix the template, or choose another template (--template NAME for a LLaMA-Factory template)");
        if (state.raised != null) throw new ChatTemplateException(state.raised);
        List<TemplateError> fatal = result.getErrors().stream()
                .filter(e -> e.getSeverity() == TemplateError.ErrorType.FATAL).toList();
        if (state.tooBig || fatal.stream().anyMatch(e -> e.getException() instanceof com.hubspot.jinjava.interpret.OutputTooBigException
                || e.getException() instanceof com.hubspot.jinjava.interpret.CollectionTooBigException
                || String.valueOf(e.getMessage()).contains("too big") || String.valueOf(e.getMessage()).contains("exceeds")))
            throw new Peft4jException.FormatException("Chat template output (or a string or list it builds) grew past the limit of "
                    + MAX_OUTPUT_CHARS + " characters / " + MAX_COLLECTION + " items; fix the template, or choose another template "
                    + "(--template NAME for a LLaMA-Factory template)");
        if (!fatal.isEmpty()) {
            String detail = fatal.stream().map(e -> "line " + e.getLineno() + ": " + e.getMessage())
                    .collect(Collectors.joining("; "));
            throw new Peft4jException.FormatException("Chat template failed to render (" + detail + "); check the "
                    + "template's syntax, or choose another template (--template NAME for a LLaMA-Factory template)");
        }
        return result.getOutput();
    }

    private static String seconds(java.time.Duration d) {
        return d.toMillis() % 1000 == 0 ? d.toSeconds() + " s" : d.toMillis() + " ms";
    }

    /// Ends the render when its time is up: called where every loop starts and every variable is read, so a template
    /// spinning in (nested) loops stops within one innermost loop (at most Jinjava's range limit, 1000, iterations).
    /// The exception may be caught by Jinjava and turned into a template error; `timedOut` makes every later check
    /// throw again at once, so the rest of the template unwinds quickly, and [#render] reports the time limit.
    static void checkDeadline() {
        JinjavaInterpreter interpreter = JinjavaInterpreter.getCurrent();
        if (interpreter == null) return;
        if (!(interpreter.getContext().get(STATE) instanceof RenderState state)) return;
        if (state.tooBig) throw new RenderTimeout();
        if (state.timedOut || System.nanoTime() - state.deadline > 0) {
            state.timedOut = true;
            throw new RenderTimeout();
        }
    }

    static final class RenderTimeout extends RuntimeException {
        RenderTimeout() { super("chat template time limit", null, false, false); }
    }

    /// Jinjava's `for`, with the time limit checked at the start of each loop.
    private static final class LimitedForTag extends com.hubspot.jinjava.lib.tag.ForTag {
        @Override public String renderForCollection(TagNode tagNode, JinjavaInterpreter interpreter, List<String> loopVars, Object collection) {
            checkDeadline();
            String out;
            try {
                out = super.renderForCollection(tagNode, interpreter, loopVars, collection);
            } catch (com.hubspot.jinjava.interpret.OutputTooBigException | com.hubspot.jinjava.interpret.CollectionTooBigException e) {
                tooBig(interpreter);
                throw e;
            }
            // Jinjava ends a loop whose output grows past the limit with an error and the truncated output, and goes
            // on with the enclosing loop, filling a new buffer to the limit each time: abandon the render instead
            if (interpreter.getLastError().map(err -> err.getException() instanceof com.hubspot.jinjava.interpret.OutputTooBigException
                    || err.getReason() == TemplateError.ErrorReason.OUTPUT_TOO_BIG).orElse(false)) {
                tooBig(interpreter);
                throw new RenderTimeout();
            }
            return out;
        }

        private static void tooBig(JinjavaInterpreter interpreter) {
            if (interpreter.getContext().get(STATE) instanceof RenderState state) state.tooBig = true;
        }
    }

    private static Jinjava create() {
        CompositeELResolver resolver = new CompositeELResolver();
        resolver.add(new PyMethodResolver());
        resolver.add(JinjavaInterpreterResolver.DEFAULT_RESOLVER_READ_ONLY);
        JinjavaConfig config = JinjavaConfig.newBuilder()
                // trim_blocks and lstrip_blocks are applied to the source by JinjaSource, as Jinja2 applies them
                .withElResolver(resolver)
                // message text is data: never re-parse a rendered string as a template
                .withNestedInterpretationEnabled(false)
                // bounded output, strings, lists and maps (a runaway template ends with an error, see render)
                .withMaxOutputSize(MAX_OUTPUT_CHARS)
                .withMaxStringLength(MAX_OUTPUT_CHARS)
                .withMaxListSize(MAX_COLLECTION)
                .withMaxMapSize(MAX_COLLECTION)
                // Jinja2 semantics where Jinjava keeps old behaviour by default: `{{-`/`{#-` trimming, strict
                // `-` parsing, evaluated dict-literal keys, iterating a dict gives keys
                .withLegacyOverrides(LegacyOverrides.newBuilder()
                        .withUseTrimmingForNotesAndExpressions(true)
                        .withParseWhitespaceControlStrictly(true)
                        .withEvaluateMapKeys(true)
                        .withIterateOverMapKeys(true)
                        .withKeepNullableLoopValues(true)
                        .withUsePyishObjectMapper(true)
                        .build())
                .build();
        Jinjava j = new Jinjava(config);
        j.registerFunction(function("raise_exception", "raiseException"));
        j.registerFunction(function("strftime_now", "strftimeNow"));
        j.registerFilter(filter("tojson", Jinja::tojson));
        j.registerFilter(filter("trim", (v, args, kw) ->
                PyStrings.strip(String.valueOf(v), args.length > 0 ? String.valueOf(args[0]) : null, true, true)));
        j.registerFilter(filter("items", (v, args, kw) -> v instanceof Map<?, ?> m ? List.copyOf(m.entrySet()) : v));
        j.registerExpTest(test("string", v -> v instanceof String || v instanceof SafeString));
        j.registerExpTest(test("mapping", v -> v instanceof Map));
        // Python: str, list, tuple and dict all have __iter__ (iterable) and __len__/__getitem__ (sequence).
        j.registerExpTest(test("iterable", v -> v instanceof String || v instanceof SafeString
                || v instanceof Iterable || v instanceof Map || (v != null && v.getClass().isArray())));
        j.registerExpTest(test("sequence", v -> v instanceof String || v instanceof SafeString
                || v instanceof Collection || v instanceof Map || (v != null && v.getClass().isArray())));
        j.registerTag(new GenerationTag());
        j.registerTag(new LimitedForTag());
        return j;
    }

    // ---- template globals (static: Jinjava binds functions to static methods) ----

    private static ELFunctionDefinition function(String name, String method) {
        try {
            java.lang.reflect.Method m = Jinja.class.getDeclaredMethod(method, String.class);
            m.setAccessible(true); // this class is package-private
            return new ELFunctionDefinition("", name, m);
        } catch (NoSuchMethodException e) {
            throw new AssertionError(e);
        }
    }

    static Object raiseException(String message) {
        RenderState state = state();
        if (state.raised == null) state.raised = message;
        throw new ChatTemplateException(message);
    }

    static String strftimeNow(String format) {
        return PyStrftime.format(format, LocalDateTime.now(state().clock));
    }

    private static RenderState state() {
        return (RenderState) JinjavaInterpreter.getCurrent().getContext().get(STATE);
    }

    // ---- filters and tests ----

    private static Object tojson(Object value, Object[] args, Map<String, Object> kwargs) {
        Object indent = kwargs.getOrDefault("indent", args.length > 1 ? args[1] : null);
        Object seps = kwargs.get("separators");
        String itemSep = null, keySep = null;
        if (seps instanceof List<?> l && l.size() == 2) {
            itemSep = String.valueOf(l.get(0));
            keySep = String.valueOf(l.get(1));
        }
        boolean ensureAscii = truthy(kwargs.getOrDefault("ensure_ascii", args.length > 0 ? args[0] : false));
        boolean sortKeys = truthy(kwargs.get("sort_keys"));
        return PyJson.dumps(value, ensureAscii, indent == null ? null : ((Number) indent).intValue(), itemSep, keySep,
                sortKeys);
    }

    private static boolean truthy(Object o) {
        return o instanceof Boolean b ? b : o != null && !"false".equalsIgnoreCase(String.valueOf(o));
    }

    private interface FilterBody {
        Object apply(Object value, Object[] args, Map<String, Object> kwargs);
    }

    private static Filter filter(String name, FilterBody body) {
        return new Filter() {
            @Override public String getName() { return name; }

            @Override public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
                return body.apply(var, args, Map.of());
            }

            @Override public Object filter(Object var, JinjavaInterpreter interpreter, Object[] args,
                                           Map<String, Object> kwargs) {
                return body.apply(var, args, kwargs);
            }
        };
    }

    private static ExpTest test(String name, java.util.function.Predicate<Object> predicate) {
        return new ExpTest() {
            @Override public String getName() { return name; }

            @Override public boolean evaluate(Object var, JinjavaInterpreter interpreter, Object... args) {
                return predicate.test(var);
            }
        };
    }

    /// `{% generation %}...{% endgeneration %}` marks assistant text for transformers' assistant masks; the
    /// rendered text is just the body.
    private static final class GenerationTag implements Tag {
        @Override public String getName() { return "generation"; }

        @Override public String getEndTagName() { return "endgeneration"; }

        @Override public String interpret(TagNode tagNode, JinjavaInterpreter interpreter) {
            StringBuilder out = new StringBuilder();
            for (Node child : tagNode.getChildren()) out.append(child.render(interpreter).getValue());
            return out.toString();
        }
    }

    /// Resolves Python `str` method calls on Java strings; everything else falls through to Jinjava.
    private static final class PyMethodResolver extends ELResolver {
        @Override public Object invoke(ELContext context, Object base, Object method, Class<?>[] types,
                                       Object[] params) {
            if (!(base instanceof String || base instanceof SafeString) || method == null) return null;
            Object result = PyStrings.call(base.toString(), method.toString(), params == null ? new Object[0] : params);
            if (result == PyStrings.NOT_A_METHOD) return null;
            context.setPropertyResolved(true);
            return result;
        }

        @Override public Class<?> getCommonPropertyType(ELContext context, Object base) { return null; }

        @Override public Iterator<FeatureDescriptor> getFeatureDescriptors(ELContext context, Object base) {
            return null;
        }

        @Override public Class<?> getType(ELContext context, Object base, Object property) { return null; }

        @Override public Object getValue(ELContext context, Object base, Object property) {
            checkDeadline();
            return null;
        }

        @Override public boolean isReadOnly(ELContext context, Object base, Object property) { return true; }

        @Override public void setValue(ELContext context, Object base, Object property, Object value) {}
    }
}
