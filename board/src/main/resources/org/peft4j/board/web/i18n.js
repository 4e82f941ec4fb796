// Interface text, one table per language. Keys not found fall back to English; key names of the training config
// (learning_rate, ...) stay as they are in both, as LLaMA-Factory's YAML uses them.
export const STRINGS = {
  en: {
    "board": "board", "language": "Language",
    "tab.train": "Train", "tab.runs": "Runs", "tab.evaluate": "Evaluate", "tab.chat": "Chat", "tab.export": "Export",
    "group.model": "Model", "group.train": "Train", "group.extra": "Extra configurations", "group.freeze": "Freeze tuning",
    "group.lora": "LoRA configurations", "group.rlhf": "RLHF configurations (stage dpo)", "group.output": "Output", "group.other": "Other keys",
    "config_path": "Config path", "btn.preview": "Preview command", "btn.save": "Save arguments", "btn.load": "Load arguments",
    "btn.estimate": "Estimate memory", "btn.start": "Start", "btn.abort": "Abort", "btn.resume": "Resume", "btn.refresh": "Refresh",
    "btn.evaluate": "Evaluate", "btn.send": "Send", "btn.stop": "Stop", "btn.clear": "Clear", "btn.export": "Export",
    "btn.preview_data": "Preview dataset",
    "job": "Job", "loss_chart": "Loss", "log": "Log", "run": "Run", "status": "Status", "updated": "Updated", "config": "Config",
    "compare": "Loss curves compared", "model": "Model", "adapters": "Adapters", "adapter": "Adapter", "dataset": "Dataset",
    "template": "Template", "general_text": "General text (forgetting check)", "system": "System prompt", "base_model": "Base model",
    "none": "(none)", "export_format": "Format", "fmt.hf": "Hugging Face folder", "fmt.nf4": "4-bit (bitsandbytes NF4)",
    "fmt.gguf": "GGUF (llama.cpp)", "chat.placeholder": "Type a message",
    "status.queued": "queued", "status.running": "running", "status.finished": "finished", "status.aborted": "aborted", "status.failed": "failed",
    "step": "step", "eta": "ETA", "tokens_per_second": "tokens/s", "loss": "loss", "eval_loss": "eval loss",
    "saved_to": "Saved to", "loaded_from": "Loaded from", "started": "Queued", "fits": "fits in the heap limit of",
    "not_supported": "not supported yet", "default": "default", "perplexity": "perplexity", "tokens": "tokens", "data": "data",
    "exported": "Exported to", "confirm_start": "The run may not fit in memory (see the estimate); press Start again to run it anyway.", "prompt": "prompt", "response": "response", "rejected": "rejected", "desirable": "desirable", "undesirable": "undesirable", "export_quant": "GGUF type", "show": "show",
  },
  zh: {
    "board": "看板", "language": "语言",
    "tab.train": "训练", "tab.runs": "运行记录", "tab.evaluate": "评估", "tab.chat": "对话", "tab.export": "导出",
    "group.model": "模型", "group.train": "训练", "group.extra": "其它参数设置", "group.freeze": "部分参数微调设置",
    "group.lora": "LoRA 参数设置", "group.rlhf": "RLHF 参数设置（dpo 阶段）", "group.output": "输出", "group.other": "其它键",
    "config_path": "配置路径", "btn.preview": "预览命令", "btn.save": "保存训练参数", "btn.load": "载入训练参数",
    "btn.estimate": "估算显存", "btn.start": "开始", "btn.abort": "中断", "btn.resume": "继续", "btn.refresh": "刷新",
    "btn.evaluate": "开始评估", "btn.send": "发送", "btn.stop": "停止", "btn.clear": "清空", "btn.export": "开始导出",
    "btn.preview_data": "预览数据集",
    "job": "任务", "loss_chart": "损失", "log": "日志", "run": "运行", "status": "状态", "updated": "更新时间", "config": "配置",
    "compare": "损失曲线对比", "model": "模型", "adapters": "适配器", "adapter": "适配器", "dataset": "数据集",
    "template": "对话模板", "general_text": "通用文本（遗忘检查）", "system": "系统提示词", "base_model": "基座模型",
    "none": "（无）", "export_format": "格式", "fmt.hf": "Hugging Face 文件夹", "fmt.nf4": "4 比特（bitsandbytes NF4）",
    "fmt.gguf": "GGUF（llama.cpp）", "chat.placeholder": "输入消息",
    "status.queued": "排队中", "status.running": "运行中", "status.finished": "已完成", "status.aborted": "已中断", "status.failed": "失败",
    "step": "步", "eta": "剩余时间", "tokens_per_second": "词元/秒", "loss": "损失", "eval_loss": "验证损失",
    "saved_to": "已保存到", "loaded_from": "已载入", "started": "已排队", "fits": "未超出堆内存上限",
    "not_supported": "暂不支持", "default": "默认值", "perplexity": "困惑度", "tokens": "词元数", "data": "数据",
    "exported": "已导出到", "confirm_start": "该任务可能超出内存（见估算结果）；再次点击“开始”仍将运行。", "prompt": "提示", "response": "回答", "rejected": "被拒绝的回答", "desirable": "好的回答", "undesirable": "差的回答", "export_quant": "GGUF 类型", "show": "显示",
  },
};

let lang = localStorage.getItem("peft4j.lang") || "en";

export function t(key) { return (STRINGS[lang] && STRINGS[lang][key]) || STRINGS.en[key] || key; }

export function language() { return lang; }

// Sets the language and rewrites every element marked with data-i18n (text) or data-i18n-placeholder.
export function setLanguage(l) {
  lang = STRINGS[l] ? l : "en";
  localStorage.setItem("peft4j.lang", lang);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}
