// A checkpoint folder as Hugging Face and sentence-transformers lay it out, given as --weights DIR:
//   config.json         the architecture's sizes (BERT family: hidden_size, num_hidden_layers, …);
//   model.safetensors   the weights, keys as BertModel's state_dict (buffers such as
//                       embeddings.position_ids are skipped, see Graph.loadParameters);
//   tokenizer.json / vocab.txt   the tokenizer (TokenizerFiles picks);
//   sentence_bert_config.json    sentence-transformers' max_seq_length;
//   1_Pooling/config.json        sentence-transformers' pooling mode.
// A checkpoint without the pooler's weights (many sentence-transformers exports) builds without it.

import Foundation
import Quarry
import QuarryFormats
import QuarryModels

struct CheckpointFolder {
    let path: String
    let config: BERTConfig
    let weights: SafeTensorsFile
    /// sentence_bert_config.json's max_seq_length, when present.
    let maxLength: Int?
    /// 1_Pooling/config.json's mode, when present.
    let pooling: FeaturePooling?

    var maxPositions: Int { config.maxPositions }
    var vocabularySize: Int { config.vocabSize }
    var sequenceLength: Int { config.sequenceLength }

    init(_ path: String, family: ModelFamily) throws {
        self.path = path
        guard family == .bert else {
            throw RuntimeError(message: "--weights \(path): a checkpoint folder is read for BERT-family models (bert_base, minilm_l6_h384); give this model a .safetensors file")
        }
        func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
        guard let configData = FileManager.default.contents(atPath: file("config.json")) else {
            throw RuntimeError(message: "--weights \(path): the folder holds no readable config.json")
        }
        do {
            var config = try BERTConfig(huggingFaceConfig: configData, source: file("config.json"))
            let weightsPath = file("model.safetensors")
            guard FileManager.default.fileExists(atPath: weightsPath) else {
                let bin = FileManager.default.fileExists(atPath: file("pytorch_model.bin"))
                throw RuntimeError(message: "--weights \(path): the folder holds no model.safetensors"
                    + (bin ? " (pytorch_model.bin is not read: save the state_dict with safetensors)" : ""))
            }
            weights = try SafeTensorsFile(path: weightsPath)
            config.pooler = weights.tensors["pooler.dense.weight"] != nil
            self.config = config
        } catch let e as QuarryError {
            throw RuntimeError(message: "\(e)")
        }
        var maxLength: Int? = nil
        if let data = FileManager.default.contents(atPath: file("sentence_bert_config.json")) {
            guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw RuntimeError(message: "\(file("sentence_bert_config.json")): not a JSON object")
            }
            maxLength = (object["max_seq_length"] as? NSNumber)?.intValue
        }
        self.maxLength = maxLength
        var pooling: FeaturePooling? = nil
        if let data = FileManager.default.contents(atPath: file("1_Pooling/config.json")) {
            guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw RuntimeError(message: "\(file("1_Pooling/config.json")): not a JSON object")
            }
            let modes: [(String, FeaturePooling)] = [("pooling_mode_cls_token", .clsToken), ("pooling_mode_mean_tokens", .maskedMean),
                                                     ("pooling_mode_max_tokens", .maskedMax)]
            let on = modes.filter { (object[$0.0] as? Bool) == true }
            // One mode only; sentence-transformers' concatenations and mean_sqrt_len are left to --pool.
            if on.count == 1 && (object["pooling_mode_mean_sqrt_len_tokens"] as? Bool) != true { pooling = on[0].1 }
        }
        self.pooling = pooling
    }

    func build(_ sequenceLength: Int) throws -> Graph {
        var c = config
        c.sequenceLength = sequenceLength
        return try BERT.build(c)
    }
}
